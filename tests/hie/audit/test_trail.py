"""Every access leaves a BALP AuditEvent, searchable at /fhir/AuditEvent (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from hie.app import Services
from hie.context import RequestContext, Scopes
from tests.support import Api

AUDITOR = "system/AuditEvent.rs"


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "gender": "female", **extra}


def observation(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


@pytest.fixture
def auditor(services: Services) -> str:
    return services.issuer.issue(subject="auditor", scope=AUDITOR, ttl=3600)


def events(api: Api, auditor: str, query: str) -> list[dict[str, Any]]:
    r = api.get(f"AuditEvent?{query}", token=auditor)
    assert r.status_code == 200, r.get_json()
    return [e["resource"] for e in r.get_json().get("entry", [])]


def test_read_search_and_write_are_audited_with_balp_fields(
    api: Api, services: Services, auditor: str
) -> None:
    clinician = services.issuer.issue(
        subject="his-a",
        scope="system/*.cruds",
        ttl=600,
        organization="Organization/a",
        purpose="TREAT",
    )
    pid = api.post("Patient", patient(), token=clinician).get_json()["id"]
    oid = api.post("Observation", observation(pid), token=clinician).get_json()["id"]
    assert api.get(f"Observation/{oid}", token=clinician).status_code == 200
    assert api.get("Observation?code=8867-4", token=clinician).status_code == 200

    about = events(api, auditor, f"patient=Patient/{pid}")
    subtypes = [e["subtype"][0]["code"] for e in about]
    assert subtypes == ["search", "read", "create", "create"]  # newest first
    search, read = about[0], about[1]
    assert read["action"] == "R"
    assert read["outcome"] == "0"
    assert search["action"] == "E"
    assert read["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    who = [a["who"] for a in read["agent"]]
    assert {"identifier": {"system": "urn:hie:client", "value": "his-a"}} in who
    assert {"reference": "Organization/a"} in who
    roles = {e["role"]["code"]: e for e in read["entity"]}
    assert roles["1"]["what"]["reference"] == f"Patient/{pid}"
    assert roles["4"]["what"]["reference"] == f"Observation/{oid}"
    query = next(e for e in search["entity"] if e["role"]["code"] == "24")
    assert base64.b64decode(query["query"]).decode() == "code=8867-4"
    assert read["recorded"].endswith("Z")
    assert read["id"].isdigit()
    chain = {x["url"]: x["valueString"] for x in read["extension"][0]["extension"]}
    assert len(chain["hash"]) == 64

    assert [e["id"] for e in events(api, auditor, f"entity=Observation/{oid}&subtype=read")] == [
        read["id"]
    ]
    assert events(api, auditor, "agent=his-a&action=C&_count=1")[0]["subtype"][0]["code"] == (
        "create"
    )
    assert len(events(api, auditor, "agent=Organization/a&type=rest")) >= 4
    today = read["recorded"][:10]
    ids = [e["id"] for e in about]
    assert [e["id"] for e in events(api, auditor, f"date={today}&patient={pid}&agent=his-a")] == ids
    assert events(api, auditor, f"date=lt{today}&patient={pid}") == []
    # An auditor's look at a patient's trail is itself on that patient's trail.
    assert events(api, auditor, f"patient={pid}&agent=auditor")[0]["subtype"][0]["code"] == "search"
    fetched = api.get(f"AuditEvent/{read['id']}", token=auditor).get_json()
    assert fetched["id"] == read["id"]
    assert fetched["subtype"] == read["subtype"]


def test_failures_and_bad_tokens_are_audited(api: Api, auditor: str) -> None:
    assert api.get("Patient/nobody").status_code == 404
    assert api.get("Patient/nobody", token="not-a-token").status_code == 401
    assert api.get("Patient?_id=x", token="not-a-token").status_code == 401
    failed = events(api, auditor, "outcome=4")
    assert [e["subtype"][0]["code"] for e in failed] == ["authenticate", "authenticate", "read"]
    assert failed[0]["type"]["code"] == "110114"
    assert "access token is not valid" in failed[0]["outcomeDesc"]
    assert failed[2]["entity"][0]["what"]["reference"] == "Patient/nobody"


def test_audit_trail_needs_a_scope_naming_it_and_is_append_only(api: Api, auditor: str) -> None:
    assert api.get("AuditEvent").status_code == 403  # system/*.cruds does not reach it
    r = api.post("AuditEvent", {"resourceType": "AuditEvent"}, token=auditor)
    assert r.status_code in (400, 403)
    assert api.get("AuditEvent?nonsense=1", token=auditor).status_code == 400
    assert api.get("AuditEvent/999999", token=auditor).status_code == 404


def test_paging_walks_back_through_the_trail(api: Api, auditor: str) -> None:
    pid = api.post("Patient", patient()).get_json()["id"]
    for _ in range(5):
        api.get(f"Patient/{pid}")
    first = api.get(f"AuditEvent?patient={pid}&_count=4", token=auditor).get_json()
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = api.get(nxt.split("/fhir/", 1)[1], token=auditor).get_json()
    ids = [e["resource"]["id"] for b in (first, second) for e in b["entry"]]
    assert len(ids) == 6
    assert len(set(ids)) == 6
    assert ids == sorted(ids, key=int, reverse=True)


def test_resident_numbers_are_redacted_from_queries(api: Api, auditor: str) -> None:
    api.get("Patient?identifier=urn:cn:id|51070319800101001X&telecom=13812345678")
    search = events(api, auditor, "subtype=search")[0]
    query = next(e for e in search["entity"] if e["role"]["code"] == "24")
    text = base64.b64decode(query["query"]).decode()
    assert "51070319800101001X" not in text
    assert "13812345678" not in text
    assert "identifier=urn:cn:id|******************" in text


def test_break_glass_is_flagged_with_its_reason(api: Api, services: Services, auditor: str) -> None:
    pid = api.post("Patient", patient()).get_json()["id"]
    btg = services.issuer.issue(
        subject="er-doctor",
        scope="system/*.rs",
        ttl=600,
        organization="Organization/b",
        purpose="BTG",
        reason="unconscious patient in ER",
    )
    assert api.get(f"Patient/{pid}", token=btg).status_code == 200
    flagged = events(api, auditor, "purpose=BTG")
    assert len(flagged) == 1
    assert flagged[0]["meta"]["security"][0]["code"] == "BTG"
    assert flagged[0]["purposeOfEvent"][0]["text"] == "unconscious patient in ER"
    assert services.exchange.audit_trail is not None
    assert [r.seq for r in services.exchange.audit_trail.break_glass()] == [int(flagged[0]["id"])]


def test_access_log_in_plain_language(api: Api, services: Services) -> None:
    org = api.post("Organization", {"resourceType": "Organization", "name": "绵阳市中心医院"})
    org_ref = f"Organization/{org.get_json()['id']}"
    pid = api.post("Patient", patient()).get_json()["id"]
    other = services.issuer.issue(
        subject="his-b", scope="system/*.rs", ttl=600, organization=org_ref, purpose="TREAT"
    )
    api.get(f"Patient/{pid}/$everything", token=other)
    card = RequestContext(actor="card-reader", scopes=Scopes("access-log"))
    log = services.exchange.access_log(card, pid)
    assert log[0].who == "his-b"
    assert log[0].organization == "绵阳市中心医院"
    assert (log[0].purpose_en, log[0].purpose_zh) == ("treatment", "诊疗")
    assert (log[0].action_en, log[0].action_zh) == (
        "viewed your whole record",
        "调阅了您的全部记录",
    )
    assert log[-1].action == "create"
    assert log[0].as_json()["purposeLabel"]["zh"] == "诊疗"
    # Reading the log is itself audited, but not listed back to the resident.
    again = services.exchange.access_log(card, pid)
    assert [e.action for e in again] == [e.action for e in log]
    with pytest.raises(Exception, match="access-log"):
        services.exchange.access_log(RequestContext(actor="x"), pid)


def test_transactions_audit_each_entry_in_their_unit_of_work(api: Api, auditor: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:p1",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:o1",
                "resource": observation("x") | {"subject": {"reference": "urn:uuid:p1"}},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    r = api.post("", bundle)
    assert r.status_code == 200, r.get_json()
    pid = r.get_json()["entry"][0]["response"]["location"].split("/")[1]
    assert [e["subtype"][0]["code"] for e in events(api, auditor, f"patient={pid}")] == [
        "create",
        "create",
    ]


def test_concurrent_reads_make_one_unbroken_chain(
    api: Api, services: Services, auditor: str
) -> None:
    pid = api.post("Patient", patient()).get_json()["id"]
    ctx = RequestContext.system()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(25):
                services.exchange.read(ctx, "Patient", pid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    services.audit.drain()
    with services.audit_log.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(sa.text("SELECT seq FROM audit_event ORDER BY seq"))]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == 201


def test_other_ways_in_record_through_the_exchange(
    api: Api, services: Services, auditor: str
) -> None:
    reader = RequestContext(
        actor="card-reader-7", organization="Organization/clinic", source="10.0.0.7"
    )
    services.exchange.record(reader, "identify", kind="card", patients={"Patient/p9"})
    services.exchange.record(
        reader, "identify", kind="card", outcome="denied", detail="card revoked"
    )
    found = events(api, auditor, "patient=Patient/p9&type=card")
    assert [e["outcome"] for e in found] == ["0"]
    refused = events(api, auditor, "agent=card-reader-7&outcome=4")
    assert refused[0]["outcomeDesc"] == "card revoked"
    assert refused[0]["agent"][0]["network"]["address"] == "10.0.0.7"
