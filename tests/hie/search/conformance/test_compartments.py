"""``Patient/[id]/[type]`` compartment searches and ``Patient/[id]/$everything``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.hie.search.conformance.conftest import Server
from tests.hie.search.conformance.oracle import (
    Corpus,
    Resource,
    date_matches,
    has_code,
    local,
    period_range,
    references,
    values,
)

TRENT = "2fda17e1-68f5-4450-bb37-775162f27530"
ELENORE = "dab4861f-04d5-4a05-8bfc-7e188353feac"

# The R4 Patient CompartmentDefinition for the types in the data, as element paths
# (written out by hand from the definition and its parameters' expressions).
COMPARTMENT: dict[str, list[tuple[str, ...]]] = {
    "AllergyIntolerance": [("patient",), ("recorder",), ("asserter",)],
    "CarePlan": [("subject",), ("activity", "detail", "performer")],
    "CareTeam": [("subject",), ("participant", "member")],
    "Claim": [("patient",), ("payee", "party")],
    "Condition": [("subject",), ("asserter",)],
    "Coverage": [("policyHolder",), ("subscriber",), ("beneficiary",), ("payor",)],
    "DiagnosticReport": [("subject",)],
    "DocumentReference": [("subject",), ("author",)],
    "Encounter": [("subject",)],
    "ExplanationOfBenefit": [("patient",), ("payee", "party")],
    "Goal": [("subject",)],
    "Group": [("member", "entity")],
    "ImagingStudy": [("subject",)],
    "Immunization": [("patient",)],
    "Media": [("subject",)],
    "MedicationAdministration": [("subject",), ("performer", "actor")],
    "MedicationDispense": [("subject",), ("receiver",)],
    "MedicationRequest": [("subject",)],
    "Observation": [("subject",), ("performer",)],
    "Patient": [("link", "other")],
    "Procedure": [("subject",), ("performer", "actor")],
    "Provenance": [("target",)],
    "QuestionnaireResponse": [("subject",), ("author",)],
    "RelatedPerson": [("patient",)],
    "RiskAssessment": [("subject",)],
    "Specimen": [("subject",)],
}
# Types of the R4 Patient compartment (the rest, Practitioner or Organization, are "outside").
INSIDE = set(COMPARTMENT) | {
    "Account", "AdverseEvent", "Appointment", "AppointmentResponse", "AuditEvent", "Basic",
    "BodyStructure", "ChargeItem", "ClaimResponse", "ClinicalImpression", "Communication",
    "CommunicationRequest", "Composition", "Consent", "CoverageEligibilityRequest",
    "CoverageEligibilityResponse", "DetectedIssue", "DeviceRequest", "DeviceUseStatement",
    "DocumentManifest", "EnrollmentRequest", "EpisodeOfCare", "FamilyMemberHistory", "Flag",
    "ImmunizationEvaluation", "ImmunizationRecommendation", "Invoice", "List", "MeasureReport",
    "MedicationStatement", "MolecularSequence", "NutritionOrder", "Person", "RequestGroup",
    "ResearchSubject", "Schedule", "ServiceRequest", "SupplyDelivery", "SupplyRequest", "Task",
    "VisionPrescription",
}  # fmt: skip


def in_compartment(r: Resource, pid: str) -> bool:
    if r["resourceType"] == "Patient" and r["id"] == pid:
        return True
    for path in COMPARTMENT.get(r["resourceType"], []):
        for ref in values(r, *path):
            if isinstance(ref, dict) and local(ref.get("reference", "")) == f"Patient/{pid}":
                return True
    return False


def compartment(corpus: Corpus, pid: str, rtype: str | None = None) -> set[str]:
    return {
        f"{r['resourceType']}/{r['id']}"
        for r in corpus.all()
        if (rtype is None or r["resourceType"] == rtype) and in_compartment(r, pid)
    }


def everything(corpus: Corpus, pid: str) -> set[str]:
    members = compartment(corpus, pid)
    out = set(members)
    for key in members:
        rtype, _, rid = key.partition("/")
        resource = corpus.get(rtype, rid)
        assert resource is not None
        for ref in references(resource):
            target = local(ref)
            ttype, _, tid = target.partition("/")
            if ttype not in INSIDE and ttype != "Patient" and corpus.get(ttype, tid):
                out.add(target)
    return out


def _active(r: Resource) -> bool:
    return has_code(r, "active", "clinicalStatus")


COMPARTMENT_SEARCHES: list[tuple[str, str, str, Callable[[Resource], bool]]] = [
    (TRENT, "Observation", "", lambda r: True),
    (TRENT, "Observation", "code=8867-4", lambda r: has_code(r, "8867-4", "code")),
    (
        TRENT,
        "Encounter",
        "date=ge2015",
        lambda r: date_matches(period_range(r["period"]), "ge", "2015"),
    ),
    (ELENORE, "Condition", "clinical-status=active", _active),
    ("cn1", "Observation", "", lambda r: True),
    ("cn1", "Patient", "", lambda r: True),
    ("cn1", "Group", "", lambda r: True),
    (
        "cn2",
        "Observation",
        "value-quantity=5.4|http://unitsofmeasure.org|mg",
        lambda r: r["id"] == "mass-g",
    ),
    (ELENORE, "MedicationRequest", "status=active", lambda r: r.get("status") == "active"),
    ("85", "Procedure", "", lambda r: True),
]


@pytest.mark.parametrize(
    ("pid", "rtype", "params", "test"),
    COMPARTMENT_SEARCHES,
    ids=[f"{p}/{t}?{q}" for p, t, q, _ in COMPARTMENT_SEARCHES],
)
def test_compartment_search(
    pid: str,
    rtype: str,
    params: str,
    test: Callable[[Resource], bool],
    server: Server,
    corpus: Corpus,
) -> None:
    matches, _ = server.search(f"Patient/{pid}/{rtype}?{params}&_count=500")
    expected = {k for k in compartment(corpus, pid, rtype) if test(_get(corpus, k))}
    assert expected
    assert {f"{rtype}/{m}" for m in matches} == expected


def _get(corpus: Corpus, key: str) -> Resource:
    rtype, _, rid = key.partition("/")
    found = corpus.get(rtype, rid)
    assert found is not None
    return found


def test_compartment_of_a_type_outside_it_is_rejected(server: Server) -> None:
    status, body = server.status("Patient/cn1/Organization")
    assert status == 400
    assert "Organization" in body["issue"][0]["diagnostics"]
    assert server.status("Patient/nobody/Observation")[0] == 404
    assert server.status("Encounter/enc-edge/Observation")[0] == 404


@pytest.mark.parametrize("pid", [TRENT, ELENORE, "cn1", "cn2", "85"])
def test_everything(pid: str, server: Server, corpus: Corpus) -> None:
    got = []
    for page in server.pages(f"Patient/{pid}/$everything?_count=200"):
        got += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page["entry"]]
    assert len(got) == len(set(got)), "no resource twice across the pages"
    assert set(got) == everything(corpus, pid)


def test_everything_type_since_and_count(server: Server, corpus: Corpus) -> None:
    only = server.search(f"Patient/{TRENT}/$everything?_type=Condition,Practitioner&_count=500")[0]
    expected = {
        k.partition("/")[2]
        for k in everything(corpus, TRENT)
        if k.startswith(("Condition/", "Practitioner/"))
    }
    assert set(only) == expected
    none = server.get(f"Patient/{TRENT}/$everything?_since=2099-01-01T00:00:00Z")
    assert none.get("entry", []) == []
    since = server.get(f"Patient/{TRENT}/$everything?_since=2000-01-01T00:00:00Z&_count=500")
    assert len(since["entry"]) == len(everything(corpus, TRENT))
    first = server.get(f"Patient/{TRENT}/$everything?_count=10")
    assert len(first["entry"]) == 10
    assert first["total"] == len(everything(corpus, TRENT))
    assert any(link["relation"] == "next" for link in first["link"])
    assert server.status(f"Patient/{TRENT}/$everything?_since=yesterday")[0] == 400
    assert server.status("Patient/nobody/$everything")[0] == 404
