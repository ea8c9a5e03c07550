"""Chains, reverse chains (``_has``) and includes, against the references in the JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.hie.search.conformance.conftest import Server
from tests.hie.search.conformance.oracle import (
    Corpus,
    Resource,
    has_code,
    identifiers,
    local,
    person_names,
    starts,
    values,
)

TRENT = "2fda17e1-68f5-4450-bb37-775162f27530"
RID = "urn:oid:2.16.156.10011.1.1"


def targets(corpus: Corpus, r: Resource, *path: str) -> list[Resource]:
    """The resources the references at ``path`` point to (those in the data)."""
    out = []
    for ref in values(r, *path):
        text = local(ref.get("reference", "")) if isinstance(ref, dict) else ""
        rtype, _, rid = text.partition("/")
        found = corpus.get(rtype, rid) if rid else None
        if found is not None:
            out.append(found)
    return out


def referrers(corpus: Corpus, rtype: str, target: Resource, *path: str) -> list[Resource]:
    key = f"{target['resourceType']}/{target['id']}"
    return [
        r
        for r in corpus.of(rtype)
        if any(local(x.get("reference", "")) == key for x in values(r, *path))
    ]


def named(r: Resource, prefix: str) -> bool:
    return starts(person_names(r), prefix)


@dataclass(frozen=True)
class Case:
    query: str
    expect: Callable[[Corpus], set[str]]


def chain(rtype: str, test: Callable[[Corpus, Resource], bool]) -> Callable[[Corpus], set[str]]:
    return lambda c: {r["id"] for r in c.of(rtype) if test(c, r)}


CHAINS = [
    Case(
        "Observation?subject.name=trent",
        chain("Observation", lambda c, r: any(named(t, "trent") for t in targets(c, r, "subject"))),
    ),
    Case(
        "Observation?subject:Patient.name=张",
        chain("Observation", lambda c, r: any(named(t, "张") for t in targets(c, r, "subject"))),
    ),
    Case(
        "Observation?patient.gender=female&code=8867-4",
        chain(
            "Observation",
            lambda c, r: (
                has_code(r, "8867-4", "code")
                and any(t.get("gender") == "female" for t in targets(c, r, "subject"))
            ),
        ),
    ),
    Case(
        f"Observation?subject.identifier={RID}|510703198503150027",
        chain(
            "Observation",
            lambda c, r: any(
                (RID, "510703198503150027") in identifiers(t) for t in targets(c, r, "subject")
            ),
        ),
    ),
    Case(
        "Observation?subject.birthdate=lt1950",
        chain(
            "Observation",
            lambda c, r: any(t.get("birthDate", "9999") < "1950" for t in targets(c, r, "subject")),
        ),
    ),
    Case(
        "Encounter?service-provider.name=绵阳",
        chain(
            "Encounter",
            lambda c, r: any(
                starts([t.get("name", "")], "绵阳") for t in targets(c, r, "serviceProvider")
            ),
        ),
    ),
    Case(
        "MedicationRequest?requester.name=stephany",
        chain(
            "MedicationRequest",
            lambda c, r: any(named(t, "stephany") for t in targets(c, r, "requester")),
        ),
    ),
    Case(
        "Observation?subject.organization.name=绵阳市中心",
        chain(
            "Observation",
            lambda c, r: any(
                starts([o.get("name", "")], "绵阳市中心")
                for t in targets(c, r, "subject")
                for o in targets(c, t, "managingOrganization")
            ),
        ),
    ),
    Case(
        "Condition?encounter.service-provider.name=绵阳",
        chain(
            "Condition",
            lambda c, r: any(
                starts([o.get("name", "")], "绵阳")
                for e in targets(c, r, "encounter")
                for o in targets(c, e, "serviceProvider")
            ),
        ),
    ),
    Case(
        "Observation?subject.general-practitioner.identifier=D-77",
        chain(
            "Observation",
            lambda c, r: any(
                any(v == "D-77" for _, v in identifiers(p))
                for t in targets(c, r, "subject")
                for p in targets(c, t, "generalPractitioner")
            ),
        ),
    ),
    Case(
        "Condition?subject.link.name=张三",
        chain(
            "Condition",
            lambda c, r: any(
                named(linked, "张三")
                for t in targets(c, r, "subject")
                for linked in targets(c, t, "link", "other")
            ),
        ),
    ),
    Case(
        "DiagnosticReport?result.code=718-7",
        chain(
            "DiagnosticReport",
            lambda c, r: any(has_code(o, "718-7", "code") for o in targets(c, r, "result")),
        ),
    ),
    Case(
        "Observation?subject.name=trent,napoleon&subject.gender=male",
        chain(
            "Observation",
            lambda c, r: (
                any((named(t, "trent") or named(t, "napoleon")) for t in targets(c, r, "subject"))
                and any(t.get("gender") == "male" for t in targets(c, r, "subject"))
            ),
        ),
    ),
]

HAS = [
    Case(
        "Patient?_has:Observation:patient:code=8867-4",
        chain(
            "Patient",
            lambda c, p: any(
                has_code(o, "8867-4", "code") for o in referrers(c, "Observation", p, "subject")
            ),
        ),
    ),
    Case(
        "Patient?_has:Condition:subject:code=38341003",
        chain(
            "Patient",
            lambda c, p: any(
                has_code(x, "38341003", "code") for x in referrers(c, "Condition", p, "subject")
            ),
        ),
    ),
    Case(
        "Patient?_has:Observation:subject:value-quantity=gt140&gender=male",
        chain(
            "Patient",
            lambda c, p: (
                p.get("gender") == "male"
                and any(
                    any(q.get("value", 0) > 140 for q in values(o, "valueQuantity"))
                    for o in referrers(c, "Observation", p, "subject")
                )
            ),
        ),
    ),
    Case(
        "Practitioner?_has:Encounter:practitioner:subject=Patient/cn1",
        chain(
            "Practitioner",
            lambda c, pr: any(
                any(local(x.get("reference", "")) == "Patient/cn1" for x in values(e, "subject"))
                for e in referrers(c, "Encounter", pr, "participant", "individual")
            ),
        ),
    ),
    Case(
        "Organization?_has:Encounter:service-provider:_has:Condition:encounter:code=38341003",
        chain(
            "Organization",
            lambda c, o: any(
                any(
                    has_code(x, "38341003", "code")
                    for x in referrers(c, "Condition", e, "encounter")
                )
                for e in referrers(c, "Encounter", o, "serviceProvider")
            ),
        ),
    ),
    Case(
        "Patient?_has:Group:member:actual=true",
        chain("Patient", lambda c, p: bool(referrers(c, "Group", p, "member", "entity"))),
    ),
    Case(
        "Encounter?_has:Observation:encounter:code=8867-4&subject=" + TRENT,
        chain(
            "Encounter",
            lambda c, e: (
                local(e["subject"]["reference"]) == f"Patient/{TRENT}"
                and any(
                    has_code(o, "8867-4", "code")
                    for o in referrers(c, "Observation", e, "encounter")
                )
            ),
        ),
    ),
]


@pytest.mark.parametrize("case", CHAINS + HAS, ids=[c.query for c in CHAINS + HAS])
def test_chain(case: Case, server: Server, corpus: Corpus) -> None:
    expected = case.expect(corpus)
    assert expected, "a chain case must select something"
    assert server.ids(case.query + "&_count=500") == expected


def _include_case(
    query: str,
    matches: Callable[[Corpus], list[Resource]],
    included: Callable[[Corpus, list[Resource]], set[str]],
) -> tuple[str, Callable[[Corpus], set[str]], Callable[[Corpus], set[str]]]:
    return (
        query,
        lambda c: {r["id"] for r in matches(c)},
        lambda c: included(c, matches(c)),
    )


def _key(r: Resource) -> str:
    return f"{r['resourceType']}/{r['id']}"


def _subjects(c: Corpus, ms: list[Resource]) -> set[str]:
    return {_key(t) for m in ms for t in targets(c, m, "subject")} - {_key(m) for m in ms}


def _heart(c: Corpus) -> list[Resource]:
    return [o for o in c.of("Observation") if has_code(o, "8867-4", "code")]


def _edge_patients(c: Corpus) -> list[Resource]:
    return [p for p in c.of("Patient") if p["id"] in ("cn1", "cn2")]


INCLUDES = [
    _include_case("Observation?code=8867-4&_include=Observation:subject", _heart, _subjects),
    _include_case(
        "Observation?code=8867-4&_include=Observation:patient:Patient", _heart, _subjects
    ),
    _include_case(
        "Observation?code=8867-4&_include=Observation:encounter",
        _heart,
        lambda c, ms: {_key(t) for m in ms for t in targets(c, m, "encounter")},
    ),
    _include_case(
        "Patient?_id=cn1,cn2&_revinclude=Encounter:patient",
        _edge_patients,
        lambda c, ms: {_key(e) for p in ms for e in referrers(c, "Encounter", p, "subject")},
    ),
    _include_case(
        "Patient?_id=cn1,cn2&_revinclude=Observation:subject&_revinclude=Condition:subject",
        _edge_patients,
        lambda c, ms: {
            _key(x)
            for p in ms
            for t in ("Observation", "Condition")
            for x in referrers(c, t, p, "subject")
        },
    ),
    _include_case(
        "Patient?_id=cn1&_include=*",
        lambda c: [p for p in c.of("Patient") if p["id"] == "cn1"],
        lambda c, ms: (
            {_key(t) for m in ms for t in targets(c, m, "managingOrganization")}
            | {_key(t) for m in ms for t in targets(c, m, "generalPractitioner")}
        ),
    ),
    _include_case(
        "Condition?_id=cond-edge&_include=Condition:encounter"
        "&_include:iterate=Encounter:service-provider&_include:iterate=Encounter:practitioner",
        lambda c: [x for x in c.of("Condition") if x["id"] == "cond-edge"],
        lambda c, ms: {"Encounter/enc-edge", "Organization/edge-org", "Practitioner/edge-pr"},
    ),
    _include_case(
        "Organization?_id=edge-org&_revinclude=Patient:organization"
        "&_revinclude:iterate=Observation:subject",
        lambda c: [o for o in c.of("Organization") if o["id"] == "edge-org"],
        lambda c, ms: {
            _key(x)
            for p in referrers(c, "Patient", ms[0], "managingOrganization")
            for x in [p, *referrers(c, "Observation", p, "subject")]
        },
    ),
    _include_case(
        "DocumentReference?_id=doc-new&_include=DocumentReference:relatesto",
        lambda c: [d for d in c.of("DocumentReference") if d["id"] == "doc-new"],
        lambda c, ms: {"DocumentReference/doc-old"},
    ),
]


@pytest.mark.parametrize(("query", "matches", "included"), INCLUDES, ids=[i[0] for i in INCLUDES])
def test_include(
    query: str,
    matches: Callable[[Corpus], set[str]],
    included: Callable[[Corpus], set[str]],
    server: Server,
    corpus: Corpus,
) -> None:
    got_matches, got_included = server.search(query + "&_count=500")
    assert set(got_matches) == matches(corpus)
    assert len(got_included) == len(set(got_included)), "an included resource repeats"
    assert set(got_included) == included(corpus)
    assert included(corpus), "an include case must include something"


def test_included_entries_say_include(server: Server) -> None:
    page = server.get("Observation?_id=bp-high&_include=Observation:subject")
    modes = {e["resource"]["resourceType"]: e["search"]["mode"] for e in page["entry"]}
    assert modes == {"Observation": "match", "Patient": "include"}
    assert page["total"] == 1, "includes never count toward the total"
