"""The access matrix: three organisations x patients with and without consent, deny
provisions, sensitive labels and break-glass, over every read path of the FHIR API.

The expected visibility is written out by hand below (``EXPECTED``), not derived from
the implementation; every path must show exactly that set: no unauthorised disclosure
and no wrongful refusal. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from hie.app import Services, build_services, create_app
from hie.context import RequestContext
from hie.settings import Settings
from tests.support import Api, iter_entries

A, B, C = "Organization/a", "Organization/b", "Organization/c"  # C: a city platform
LOINC = "http://loinc.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATIENTS = ["p1", "p2", "p3", "p4", "p5", "p6"]
KINDS = ["Patient", "obs", "hiv", "cond"]


def resources(p: str) -> list[dict[str, Any]]:
    """What hospital A holds for patient ``p``: the Patient, an Observation, an
    HIV-labelled Observation and a Condition."""
    subject = {"reference": f"Patient/{p}"}
    return [
        {
            "resourceType": "Patient",
            "id": p,
            "name": [{"family": f"Fam{p}"}],
            "identifier": [{"system": "urn:mrn", "value": p}],
        },
        {
            "resourceType": "Observation",
            "id": f"{p}-obs",
            "status": "final",
            "identifier": [{"system": "urn:obs", "value": f"{p}-obs"}],
            "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
            "subject": subject,
        },
        {
            "resourceType": "Observation",
            "id": f"{p}-hiv",
            "meta": {"security": [{"system": ACT, "code": "HIV"}]},
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "75622-1"}]},
            "subject": subject,
        },
        {
            "resourceType": "Condition",
            "id": f"{p}-cond",
            "subject": subject,
            "code": {"text": "asthma"},
        },
    ]


def ref(kind: str, p: str) -> str:
    return (
        f"Patient/{p}"
        if kind == "Patient"
        else (f"Condition/{p}-cond" if kind == "cond" else f"Observation/{p}-{kind}")
    )


def consent(cid: str, p: str, provision: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": cid,
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{p}"},
        "policyRule": {"coding": [{"system": ACT, "code": "OPTIN"}]},
        "provision": provision,
    }


def actor(org: str) -> list[dict[str, Any]]:
    role = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
        ]
    }
    return [{"role": role, "reference": {"reference": org}}]


def purpose(code: str) -> list[dict[str, Any]]:
    return [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code}]


CONSENTS = [
    # p1: no consent. p2: a general permit (any hospital, any purpose).
    consent("c2", "p2", {"type": "permit"}),
    # p3: B may see, except Conditions.
    consent(
        "c3",
        "p3",
        {
            "type": "permit",
            "actor": actor(B),
            "provision": [
                {
                    "type": "deny",
                    "class": [
                        {"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}
                    ],
                }
            ],
        },
    ),
    # p4: nothing by default; B everything, HIV results named explicitly.
    consent(
        "c4",
        "p4",
        {
            "type": "deny",
            "provision": [
                {"type": "permit", "actor": actor(B)},
                {
                    "type": "permit",
                    "actor": actor(B),
                    "securityLabel": [{"system": ACT, "code": "HIV"}],
                },
            ],
        },
    ),
    # p5: the platform C sees Observations for public health; a general permit too,
    # which a platform does not get (it names no actor and no purpose).
    consent(
        "c5",
        "p5",
        {
            "type": "permit",
            "actor": actor(C),
            "purpose": purpose("PUBHLTH"),
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
        },
    ),
    consent("c5b", "p5", {"type": "permit"}),
    # p6: a general permit, and another Consent denying B: the deny wins.
    consent("c6", "p6", {"type": "permit"}),
    consent("c6b", "p6", {"type": "deny", "actor": actor(B)}),
]

ALL = {ref(k, p) for p in PATIENTS for k in KINDS} | {"Observation/p1-b"}
GENERAL = {"Patient", "obs", "cond"}  # a permit that names no sensitive label
EXPECTED: dict[str, set[str]] = {
    "a": ALL - {"Observation/p1-b"},  # the custodian; p1-b is B's, for a patient without consent
    "b": {"Observation/p1-b"}  # its own
    | {ref(k, "p2") for k in GENERAL}
    | {ref(k, "p3") for k in ("Patient", "obs")}
    | {ref(k, "p4") for k in KINDS}
    | {ref(k, "p5") for k in GENERAL},
    "c": {ref("obs", "p5")},
    "c-treat": set(),  # the platform, without the purpose its Consent names
    "b-btg": ALL,
}
# The master patient index derives an enterprise Patient (custodian: the exchange) for
# each source Patient; whoever holds the source, or may see it, sees it too.
ENTERPRISE_SEEN = {
    "a": PATIENTS,
    "b": ["p2", "p3", "p4", "p5"],
    "c": [],
    "c-treat": [],
    "b-btg": PATIENTS,
}


@pytest.fixture
def matrix(db_url: str, tmp_path: Path) -> Iterator[tuple[Services, Flask]]:
    policy = tmp_path / "consent.toml"
    source = Path(__file__).parents[3] / "config" / "consent.toml"
    policy.write_text(source.read_text().replace("platforms = []", f'platforms = ["{C}"]'))
    settings = Settings().replace(
        database__url=db_url,
        data__dir=str(tmp_path / "var"),
        consent__policy=str(policy),
    )
    services = build_services(settings)
    yield services, create_app(services=services)
    services.close()


def tokens(services: Services) -> dict[str, str]:
    issue = services.issuer.issue
    scope = "system/*.cruds"
    return {
        "a": issue(subject="his-a", scope=f"{scope} consent.record", ttl=600, organization=A),
        "b": issue(subject="his-b", scope=scope, ttl=600, organization=B, purpose="TREAT"),
        "c": issue(subject="plat-c", scope=scope, ttl=600, organization=C, purpose="PUBHLTH"),
        "c-treat": issue(subject="plat-c", scope=scope, ttl=600, organization=C),
        "b-btg": issue(
            subject="his-b",
            scope=scope,
            ttl=600,
            organization=B,
            purpose="BTG",
            reason="unconscious patient in the emergency room",
        ),
    }


def load(api: Api, items: list[dict[str, Any]]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in items
        ],
    }
    response = api.post("", bundle)
    assert response.status_code == 200, response.get_json()


def ids(bundle: dict[str, Any], mode: str | None = None) -> set[str]:
    out = set()
    for e in iter_entries(bundle):
        r = e.get("resource", {})
        if r.get("resourceType") in ("OperationOutcome", "Consent"):
            continue
        if mode is None or e.get("search", {}).get("mode") == mode:
            out.add(f"{r['resourceType']}/{r['id']}")
    return out


def walk(api: Api, path: str) -> tuple[set[str], list[Any]]:
    """Every page of a search: the ids and each page's total."""
    found: set[str] = set()
    totals = []
    url: str | None = path
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.get_json()
        bundle = response.get_json()
        found |= ids(bundle, "match")
        totals.append(bundle.get("total"))
        url = next((lk["url"] for lk in bundle.get("link", []) if lk["relation"] == "next"), None)
        if url:
            url = url.split("/fhir/", 1)[1]
    return found, totals


def test_every_read_path_shows_exactly_what_the_policy_permits(
    matrix: tuple[Services, Flask],
) -> None:
    services, app = matrix
    client = app.test_client()
    tok = tokens(services)
    hospital_a = Api(client, tok["a"])
    load(hospital_a, [r for p in PATIENTS for r in resources(p)])
    load(hospital_a, CONSENTS)
    load(
        Api(client, tok["b"]),
        [
            {
                "resourceType": "Observation",
                "id": "p1-b",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                "subject": {"reference": "Patient/p1"},
            }
        ],
    )
    admin = RequestContext.system()
    ent = {
        p: f"Patient/{services.exchange.search(admin, 'Patient', [('link', f'Patient/{p}')]).entries[0].id}"
        for p in PATIENTS
    }
    everything = ALL | set(ent.values())
    failures: list[str] = []

    def check(who: str, path: str, shown: set[str], expected: set[str]) -> None:
        leaked, refused = shown - expected, expected - shown
        if leaked:
            failures.append(f"{who} {path}: disclosed {sorted(leaked)}")
        if refused:
            failures.append(f"{who} {path}: refused {sorted(refused)}")

    for who, listed in EXPECTED.items():
        expected = listed | {ent[p] for p in ENTERPRISE_SEEN[who]}
        api = Api(client, tok[who])
        # read, vread and instance history
        for r in sorted(everything):
            got = api.get(r)
            if got.status_code not in (200, 404):
                failures.append(f"{who} GET {r}: {got.status_code}")
            check(who, f"GET {r}", {r} if got.status_code == 200 else set(), expected & {r})
            v = api.get(f"{r}/_history/1")
            check(who, f"vread {r}", {r} if v.status_code == 200 else set(), expected & {r})
            h = api.get(f"{r}/_history")
            check(
                who,
                f"history {r}",
                ids(h.get_json()) if h.status_code == 200 else set(),
                expected & {r},
            )
        # searches, paged one at a time: hidden resources take no place and no count
        for rtype in ("Patient", "Observation", "Condition"):
            want = {r for r in expected if r.startswith(rtype + "/")}
            found, totals = walk(api, f"{rtype}?_count=1&_total=accurate")
            check(who, f"search {rtype}", found, want)
            if any(t != len(want) for t in totals):
                failures.append(f"{who} {rtype} totals {totals} != {len(want)}")
            # Break-glass hides nothing, so its estimates may stay estimates.
            estimate = () if who == "b-btg" else ("_total=estimate&_count=1",)
            for counting in ("_summary=count", *estimate):
                counted = api.get(f"{rtype}?{counting}").get_json()["total"]
                if counted != len(want):
                    failures.append(f"{who} {rtype} {counting}: {counted} != {len(want)}")
        # type and system history
        h = api.get("Observation/_history?_count=100").get_json()
        check(who, "Observation/_history", ids(h), {r for r in expected if "Observation/" in r})
        # a chain must not reveal through its match what the resource would hide
        chained, _ = walk(api, "Observation?subject:Patient.family=Fam&_count=50")
        want = {
            r
            for r in expected
            if r.startswith("Observation/")
            and f"Patient/{r.split('/')[1].split('-')[0]}" in expected
        }
        check(who, "chain", chained, want)
        # _has: a patient is found only through Observations the caller may see
        has, _ = walk(api, "Patient?_has:Observation:subject:code=8867-4")
        want = {
            f"Patient/{p}"
            for p in PATIENTS
            if f"Patient/{p}" in expected
            and (ref("obs", p) in expected or (p == "p1" and "Observation/p1-b" in expected))
        }
        check(who, "_has", has, want)
        # _include and _revinclude
        inc = api.get("Observation?_include=Observation:subject&_count=100").get_json()
        check(
            who,
            "_include",
            ids(inc, "include"),
            {r for r in expected if r.startswith("Patient/")}
            & {f"Patient/{r.split('/')[1].split('-')[0]}" for r in ids(inc, "match")},
        )
        rev = api.get("Patient?_revinclude=Observation:subject&_count=100").get_json()
        check(
            who,
            "_revinclude",
            ids(rev, "include"),
            {r for r in expected if r.startswith("Observation/")}
            & {
                r
                for r in ALL
                if r.startswith("Observation/")
                and f"Patient/{r.split('/')[1].split('-')[0]}" in ids(rev, "match")
            },
        )
        # $everything and compartment searches
        for p in PATIENTS:
            mine = {r for r in expected if r.split("/")[1].split("-")[0] == p}
            mine |= {ent[p]} & expected
            ev = api.get(f"Patient/{p}/$everything")
            shown = ids(ev.get_json()) if ev.status_code == 200 else set()
            check(who, f"$everything {p}", shown, mine if f"Patient/{p}" in expected else set())
            comp = api.get(f"Patient/{p}/Observation")
            shown = ids(comp.get_json()) if comp.status_code == 200 else set()
            want = {r for r in mine if r.startswith("Observation/")}
            check(
                who,
                f"Patient/{p}/Observation",
                shown,
                want if f"Patient/{p}" in expected else set(),
            )
        # the GET entries of a batch
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": r}} for r in sorted(everything)],
        }
        response = api.post("", batch).get_json()
        shown = {
            r
            for r, e in zip(sorted(everything), response["entry"], strict=True)
            if e["response"]["status"].startswith("200")
        }
        check(who, "batch GET", shown, expected)
    assert not failures, "\n".join(failures)


def test_conditional_writes_do_not_reveal_or_change_hidden_resources(
    matrix: tuple[Services, Flask],
) -> None:
    services, app = matrix
    client = app.test_client()
    tok = tokens(services)
    load(Api(client, tok["a"]), resources("p1"))
    b = Api(client, tok["b"])
    body = {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": "urn:obs", "value": "p1-obs"}],
        "code": {"text": "overwritten"},
    }
    assert b.put("Observation?identifier=urn:obs|p1-obs", body).status_code == 412
    assert (
        b.post(
            "Observation", body, headers={"If-None-Exist": "identifier=urn:obs|p1-obs"}
        ).status_code
        == 412
    )
    assert b.delete("Observation?identifier=urn:obs|p1-obs").status_code == 412
    assert b.put("Observation/p1-obs", {**body, "id": "p1-obs"}).status_code == 404
    assert b.delete("Observation/p1-obs").status_code == 404
    kept = Api(client, tok["a"]).get("Observation/p1-obs").get_json()
    assert kept["code"] == {"coding": [{"system": LOINC, "code": "8867-4"}]}
    assert kept["meta"]["versionId"] == "1"
