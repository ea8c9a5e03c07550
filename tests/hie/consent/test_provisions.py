"""Consent provisions beyond organisation/purpose/class: actors that are a Practitioner or
a PractitionerRole (a clinician in the web UI), ``dataPeriod`` and ``data``, with
deny-wins and nested exceptions. Reads and searches must agree (the Python decision and
the SQL filter). Through the HTTP API with real tokens and sessions, SQLite and PG."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from hie.app import Services
from tests.hie.consent.test_access_matrix import actor, consent, load
from tests.hie.web.test_ui import PASSWORD, sign_in
from tests.support import Api, iter_entries

H, A, B = "Organization/hosp-h", "Organization/hosp-a", "Organization/hosp-b"
RECORDER = "system/*.cruds consent.record"
TYPES = "http://hl7.org/fhir/resource-types"


def _api(app: Flask, services: Services, org: str, scope: str = "system/*.cruds") -> Api:
    token = services.issuer.issue(
        subject=f"client-{org}", scope=scope, ttl=600, organization=org, purpose="TREAT"
    )
    return Api(app.test_client(), token)


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": f"Zz{pid}"}]}


def _obs(oid: str, pid: str, when: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        **extra,
    }
    if when:
        body["effectiveDateTime"] = when
    return body


def _visible(api: Api, pid: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` the caller sees, by read; checked against a search (SQL)."""
    by_read = {i for i in ids if api.get(f"Observation/{i}").status_code == 200}
    found = api.get(f"Observation?subject=Patient/{pid}&_count=50&_total=accurate").get_json()
    by_search = {e["resource"]["id"] for e in iter_entries(found)}
    assert by_read == by_search, (by_read, by_search)
    assert found["total"] == len(by_search)
    return by_read


def _period(start: str, end: str) -> dict[str, str]:
    return {"start": start, "end": end}


@pytest.fixture
def world(app: Flask, services: Services) -> tuple[Api, Api, Api]:
    """H holds the records; a recorder at H writes Consents; B asks."""
    return _api(app, services, H), _api(app, services, H, RECORDER), _api(app, services, B)


def test_data_period_places_records_in_time(world: tuple[Api, Api, Api]) -> None:
    h, recorder, b = world
    ids = ["d20", "d25", "dnone", "d25b"]
    load(
        h,
        [
            _patient("dp"),
            _obs("d20", "dp", "2020-06-01T10:00:00Z"),
            _obs("d25", "dp", "2025-03-01T10:00:00Z"),
            _obs("dnone", "dp", None),
            _obs("d25b", "dp", "2025-12-31"),
        ],
    )
    assert _visible(b, "dp", ids) == set()
    # B may see what happened in 2024-2025; an undated record is not "in" the period.
    dated = consent(
        "cdp", "dp", {"type": "permit", "actor": actor(B), "dataPeriod": _period("2024", "2025")}
    )
    assert recorder.put("Consent/cdp", dated).status_code == 201
    assert _visible(b, "dp", ids) == {"d25", "d25b"}
    # A general permit with a nested deny for 2025 data, itself excepting d25b by data:
    # deny wins over the permit (undated dnone too), the nested exception re-opens d25b.
    nested = consent(
        "cdp",
        "dp",
        {
            "type": "permit",
            "actor": actor(B),
            "provision": [
                {
                    "type": "deny",
                    "dataPeriod": _period("2025-01-01", "2025-12-31"),
                    "provision": [
                        {
                            "type": "permit",
                            "data": [
                                {
                                    "meaning": "instance",
                                    "reference": {"reference": "Observation/d25b"},
                                }
                            ],
                        }
                    ],
                }
            ],
        },
    )
    assert recorder.put("Consent/cdp", nested).status_code == 200
    assert _visible(b, "dp", ids) == {"d20", "d25b"}
    # Another Consent's deny for 2020 wins over this one's permit; an undated record
    # cannot be shown to lie outside the denied period, so the deny covers it too.
    deny20 = consent(
        "cdp2",
        "dp",
        {"type": "deny", "actor": actor(B), "dataPeriod": {"end": "2020-12-31"}},
    )
    assert recorder.put("Consent/cdp2", deny20).status_code == 201
    assert _visible(b, "dp", ids) == {"d25b"}


def test_data_names_instances_and_their_dependents(world: tuple[Api, Api, Api]) -> None:
    h, recorder, b = world
    ids = ["o1", "o2", "o3"]
    encounter = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/dd"},
    }
    load(
        h,
        [
            _patient("dd"),
            encounter,
            _obs("o1", "dd", None),
            _obs("o2", "dd", None, encounter={"reference": "Encounter/enc-1"}),
            _obs("o3", "dd", None),
        ],
    )

    def data(*items: tuple[str, str]) -> list[dict[str, Any]]:
        return [{"meaning": m, "reference": {"reference": r}} for m, r in items]

    only_o1 = consent(
        "cdd",
        "dd",
        {"type": "permit", "actor": actor(B), "data": data(("instance", "Observation/o1"))},
    )
    assert recorder.put("Consent/cdd", only_o1).status_code == 201
    assert _visible(b, "dd", ids) == {"o1"}
    assert b.get("Encounter/enc-1").status_code == 404
    # dependents: the Encounter and the records that refer to it
    visit = consent(
        "cdd",
        "dd",
        {"type": "permit", "actor": actor(B), "data": data(("dependents", "Encounter/enc-1"))},
    )
    assert recorder.put("Consent/cdd", visit).status_code == 200
    assert _visible(b, "dd", ids) == {"o2"}
    assert b.get("Encounter/enc-1").status_code == 200
    # everything but o3 (a nested deny by instance); 'related' in a deny is not narrowed
    # to the instance: it denies all its parent permits (never less than asked).
    most = consent(
        "cdd",
        "dd",
        {
            "type": "permit",
            "actor": actor(B),
            "provision": [{"type": "deny", "data": data(("instance", "Observation/o3"))}],
        },
    )
    assert recorder.put("Consent/cdd", most).status_code == 200
    assert _visible(b, "dd", ids) == {"o1", "o2"}
    related = consent(
        "cdd",
        "dd",
        {
            "type": "permit",
            "actor": actor(B),
            "class": [{"system": TYPES, "code": "Observation"}],
            "provision": [{"type": "deny", "data": data(("related", "Observation/o3"))}],
        },
    )
    assert recorder.put("Consent/cdd", related).status_code == 200
    assert _visible(b, "dd", ids) == set()


def _clinician(services: Services, login: str, practitioner: str, role: str) -> None:
    services.auth.accounts.add(
        login, PASSWORD, practitioner=practitioner, role=role, organization=A, scope="user/*.rs"
    )


def _ui_sees(app: Flask, login: str, pid: str) -> bool:
    browser = app.test_client()
    assert sign_in(browser, login).status_code == 303
    page = browser.get(f"/ui/patients?q=Zz{pid}&by=name")
    assert page.status_code == 200, page.get_data(as_text=True)
    return f">{pid}<" in page.get_data(as_text=True) or f"/{pid}" in page.get_data(as_text=True)


def test_practitioner_and_role_actors_match_the_signed_in_clinician(
    app: Flask, services: Services, world: tuple[Api, Api, Api]
) -> None:
    h, recorder, _ = world
    _clinician(services, "dr.li", "Practitioner/li", "PractitionerRole/li-cardio")
    _clinician(services, "dr.wang", "Practitioner/wang", "PractitionerRole/wang-gp")
    load(h, [_patient("pr1"), _patient("pr2"), _patient("pr3")])
    assert not _ui_sees(app, "dr.li", "pr1")
    # pr1: Dr Li by Practitioner; pr2: the cardiology role; pr3: everyone at A but the role.
    by_person = consent("cpr1", "pr1", {"type": "permit", "actor": actor("Practitioner/li")})
    by_role = consent(
        "cpr2", "pr2", {"type": "permit", "actor": actor("PractitionerRole/li-cardio")}
    )
    not_role = consent(
        "cpr3",
        "pr3",
        {
            "type": "permit",
            "actor": actor(A),
            "provision": [{"type": "deny", "actor": actor("PractitionerRole/li-cardio")}],
        },
    )
    for c in (by_person, by_role, not_role):
        assert recorder.put(f"Consent/{c['id']}", c).status_code == 201
    assert _ui_sees(app, "dr.li", "pr1")
    assert not _ui_sees(app, "dr.wang", "pr1")
    assert _ui_sees(app, "dr.li", "pr2")
    assert not _ui_sees(app, "dr.wang", "pr2")
    assert not _ui_sees(app, "dr.li", "pr3")  # deny wins for the role
    assert _ui_sees(app, "dr.wang", "pr3")
    # A client token of A has no practitioner: the practitioner's permit is not its.
    a = _api(app, services, A)
    assert a.get("Patient/pr1").status_code == 404
    assert a.get("Patient/pr3").status_code == 200


PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def _source(ref: str, code: str = "AUT") -> dict[str, Any]:
    """An actor whose role makes it the data's source, not its recipient."""
    return {
        "role": {"coding": [{"system": PARTICIPATION, "code": code}]},
        "reference": {"reference": ref},
    }


def test_source_roles_make_the_actor_a_condition_on_the_custodian(
    app: Flask, services: Services, world: tuple[Api, Api, Api]
) -> None:
    h, recorder, b = world
    a = _api(app, services, A)
    ids = ["sh", "sa"]
    load(h, [_patient("sr"), _obs("sh", "sr", "2024-01-01")])
    load(a, [_obs("sa", "sr", "2024-01-02")])
    # B may see the resident's records, except what hospital A wrote (its author/custodian).
    not_from_a = consent(
        "csr",
        "sr",
        {
            "type": "permit",
            "actor": actor(B),
            "provision": [{"type": "deny", "actor": [_source(A)]}],
        },
    )
    assert recorder.put("Consent/csr", not_from_a).status_code == 201
    assert _visible(b, "sr", ids) == {"sh"}
    # Only what H holds, named as custodian beside the recipient.
    only_h = consent("csr", "sr", {"type": "permit", "actor": [*actor(B), _source(H, "CST")]})
    assert recorder.put("Consent/csr", only_h).status_code == 200
    assert _visible(b, "sr", ids) == {"sh"}
    assert b.get("Patient/sr").status_code == 200  # H's Patient record: H holds it
    only_a = consent("csr", "sr", {"type": "permit", "actor": [*actor(B), _source(A)]})
    assert recorder.put("Consent/csr", only_a).status_code == 200
    assert _visible(b, "sr", ids) == {"sa"}
    assert b.get("Patient/sr").status_code == 404
    # A deny naming a Practitioner as author cannot be judged per record (the exchange
    # knows custodians, not authors): it denies all it would otherwise cover.
    by_doctor = consent(
        "csr",
        "sr",
        {
            "type": "permit",
            "actor": actor(B),
            "provision": [{"type": "deny", "actor": [_source("Practitioner/zhang")]}],
        },
    )
    assert recorder.put("Consent/csr", by_doctor).status_code == 200
    assert _visible(b, "sr", ids) == set()


def _decide(api: Api, *params: dict[str, Any]) -> dict[str, str]:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "actor", "valueReference": {"reference": B}}, *params],
    }
    response = api.post("Consent/$evaluate", body)
    assert response.status_code == 200, response.get_json()
    return {
        p["name"]: p.get("valueCode") or p.get("valueString")
        for p in response.get_json()["parameter"]
    }


def test_the_decision_api_judges_data_periods_custodians_and_named_records(
    app: Flask, services: Services, world: tuple[Api, Api, Api]
) -> None:
    h, recorder, _ = world
    load(h, [_patient("ev"), _obs("e20", "ev", "2020-05-01"), _obs("e25", "ev", "2025-05-01")])
    load(_api(app, services, A), [_obs("ea", "ev", "2025-06-01")])
    permit = consent(
        "cev",
        "ev",
        {
            "type": "permit",
            "actor": actor(B),
            "dataPeriod": _period("2024", "2025"),
            "provision": [{"type": "deny", "actor": [_source(A)]}],
        },
    )
    assert recorder.put("Consent/cev", permit).status_code == 201
    platform = Api(
        app.test_client(),
        services.issuer.issue(subject="p", scope="consent.evaluate", ttl=600, organization=B),
    )
    patient = {"name": "patient", "valueReference": {"reference": "Patient/ev"}}
    obs = {"name": "class", "valueCode": "Observation"}

    def date(value: str) -> dict[str, Any]:
        return {"name": "date", "valueDateTime": value}

    holder = {"name": "custodian", "valueReference": {"reference": H}}
    # A class question must state what the provisions look at, or it is not covered.
    assert _decide(platform, patient, obs)["decision"] == "deny"
    assert _decide(platform, patient, obs, date("2025-03-01"))["decision"] == "deny"
    out = _decide(platform, patient, obs, date("2025-03-01"), holder)
    assert out["decision"] == "permit"
    assert "Consent/cev" in out["rule"]
    assert _decide(platform, patient, obs, date("2019-03-01"), holder)["decision"] == "deny"
    period = {"name": "date", "valuePeriod": {"start": "2024-02-01", "end": "2024-03-01"}}
    assert _decide(platform, patient, obs, period, holder)["decision"] == "permit"
    from_a = {"name": "custodian", "valueReference": {"reference": A}}
    assert _decide(platform, patient, obs, date("2025-03-01"), from_a)["decision"] == "deny"
    # A named record is judged as a read of it is, from what is stored.

    def record(ref: str) -> dict[str, Any]:
        return {"name": "resource", "valueReference": {"reference": ref}}

    assert _decide(platform, patient, record("Observation/e25"))["decision"] == "permit"
    assert _decide(platform, patient, record("Observation/e20"))["decision"] == "deny"
    assert _decide(platform, patient, record("Observation/ea"))["decision"] == "deny"
    # Missing and someone else's records get the same answer: existence is not disclosed.
    load(h, [_patient("ev2"), _obs("other", "ev2", "2025-01-01")])
    missing = _decide(platform, patient, record("Observation/nope"))
    elsewhere = _decide(platform, patient, record("Observation/other"))
    assert missing["decision"] == elsewhere["decision"] == "deny"
    assert missing["rule"].replace("nope", "") == elsewhere["rule"].replace("other", "")
    bad = platform.post(
        "Consent/$evaluate",
        {
            "resourceType": "Parameters",
            "parameter": [
                patient,
                obs,
                {"name": "actor", "valueReference": {"reference": B}},
                date("2025-13-01"),
            ],
        },
    )
    assert bad.status_code == 400
    assert "date" in bad.get_json()["issue"][0]["diagnostics"]
