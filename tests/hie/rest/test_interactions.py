"""FHIR REST interactions end to end through the Flask app, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hie.app import create_app
from hie.auth.keys import load_or_create_signing_key
from hie.auth.tokens import TokenIssuer
from hie.settings import Settings
from tests.support import Api


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Plain FHIR storage: these tests count Patients, so no enterprise Patients."""
    return settings.replace(identity__enabled=False)


def patient(mrn: str = "m1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": mrn}],
        "name": [{"family": "张", "given": ["三"], "text": "张三"}],
        "gender": "male",
        **extra,
    }


def created_id(response: Any) -> str:
    return str(response.get_json()["id"])


def test_create_sets_id_meta_and_headers(api: Api) -> None:
    r = api.post("Patient", patient(id="client-chosen"))
    assert r.status_code == 201
    body = r.get_json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert r.headers["Last-Modified"].endswith("GMT")
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    assert body["name"][0]["text"] == "张三"


def test_read_vread_and_missing(api: Api) -> None:
    pid = created_id(api.post("Patient", patient()))
    read = api.get(f"Patient/{pid}")
    assert read.status_code == 200
    assert read.headers["ETag"] == 'W/"1"'
    assert read.get_json()["id"] == pid
    assert api.get(f"Patient/{pid}/_history/1").get_json()["meta"]["versionId"] == "1"
    missing = api.get(f"Patient/{pid}/_history/7")
    assert missing.status_code == 404
    assert missing.get_json()["resourceType"] == "OperationOutcome"
    assert api.get("Patient/does-not-exist").status_code == 404
    unknown = api.get("Flubber/1")
    assert unknown.status_code == 404
    assert "Flubber" in unknown.get_json()["issue"][0]["diagnostics"]


def test_update_versions_if_match_and_unchanged_content(api: Api) -> None:
    pid = created_id(api.post("Patient", patient()))
    body = patient(id=pid, gender="female")
    r = api.put(f"Patient/{pid}", body)
    assert r.status_code == 200
    assert r.headers["ETag"] == 'W/"2"'
    same = api.put(f"Patient/{pid}", body)
    assert same.headers["ETag"] == 'W/"2"', "an unchanged resource keeps its version"
    stale = api.put(
        f"Patient/{pid}", patient(id=pid, gender="other"), headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert stale.get_json()["resourceType"] == "OperationOutcome"
    ok = api.put(f"Patient/{pid}", patient(id=pid, gender="other"), headers={"If-Match": 'W/"2"'})
    assert ok.status_code == 200
    assert ok.headers["ETag"] == 'W/"3"'
    bad_etag = api.put(f"Patient/{pid}", body, headers={"If-Match": "three"})
    assert bad_etag.status_code == 400


def test_create_on_update_with_client_id(api: Api) -> None:
    r = api.put("Patient/mrn-0001", patient(id="mrn-0001"))
    assert r.status_code == 201
    assert r.headers["Location"].endswith("/fhir/Patient/mrn-0001/_history/1")
    assert api.put("Patient/bad id!", patient(id="bad id!")).status_code == 400


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("Patient/p1", patient(id="other"), 400, "does not match the URL id"),
        ("Patient/p1", patient(), 400, "does not match the URL id"),
        ("Observation/p1", patient(id="p1"), 400, "resourceType 'Patient'"),
        ("Flubber/p1", {"resourceType": "Flubber", "id": "p1"}, 404, "Flubber"),
    ],
)
def test_update_rejects_mismatches(
    api: Api, path: str, body: Any, status: int, fragment: str
) -> None:
    r = api.put(path, body)
    assert r.status_code == status
    assert fragment in r.get_json()["issue"][0]["diagnostics"]


def test_delete_gone_and_revive(api: Api) -> None:
    pid = created_id(api.post("Patient", patient()))
    assert api.delete(f"Patient/{pid}").status_code == 204
    gone = api.get(f"Patient/{pid}")
    assert gone.status_code == 410
    assert gone.get_json()["issue"][0]["code"] == "deleted"
    assert api.delete(f"Patient/{pid}").status_code == 204  # idempotent
    assert api.delete("Patient/never-was").status_code == 404
    revived = api.put(f"Patient/{pid}", patient(id=pid))
    assert revived.status_code == 201
    assert revived.headers["ETag"] == 'W/"3"'
    assert api.get(f"Patient/{pid}").status_code == 200
    history = api.get(f"Patient/{pid}/_history").get_json()
    assert history["type"] == "history"
    assert history["total"] == 3
    methods = [e["request"]["method"] for e in history["entry"]]
    assert methods == ["PUT", "DELETE", "POST"]
    assert "resource" not in history["entry"][1]
    assert api.get(f"Patient/{pid}/_history/2").status_code == 410


def test_history_type_and_system_with_since_count_and_paging(api: Api) -> None:
    first = created_id(api.post("Patient", patient("a")))
    stamp = api.get(f"Patient/{first}").get_json()["meta"]["lastUpdated"]
    for n in range(4):
        api.post("Patient", patient(f"b{n}"))
    api.post(
        "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    )
    typed = api.get("Patient/_history?_count=2").get_json()
    assert typed["total"] == 5
    assert len(typed["entry"]) == 2
    seen = [e["fullUrl"] for e in typed["entry"]]
    next_url = next(link["url"] for link in typed["link"] if link["relation"] == "next")
    page2 = api.get(next_url.split("/fhir/", 1)[1]).get_json()
    seen += [e["fullUrl"] for e in page2["entry"]]
    assert len(set(seen)) == 4, "paging neither skips nor repeats"
    system = api.get("_history").get_json()
    assert system["total"] == 6
    assert system["entry"][0]["resource"]["resourceType"] == "Observation"
    since = api.get(f"_history?_since={stamp}").get_json()
    assert since["total"] == 6
    assert api.get("_history?_since=yesterday").status_code == 400


def test_json_patch(api: Api) -> None:
    pid = created_id(api.post("Patient", patient()))
    ops = [{"op": "replace", "path": "/gender", "value": "female"}]
    r = api.patch(f"Patient/{pid}", ops)
    assert r.status_code == 200
    assert r.get_json()["gender"] == "female"
    assert r.headers["ETag"] == 'W/"2"'
    wrong_type = api.request("PATCH", f"Patient/{pid}", ops)
    assert wrong_type.status_code == 415
    failed_test = api.patch(f"Patient/{pid}", [{"op": "test", "path": "/gender", "value": "male"}])
    assert failed_test.status_code == 422
    bad_path = api.patch(f"Patient/{pid}", [{"op": "remove", "path": "/nothing/here"}])
    assert bad_path.status_code == 400
    invalid = api.patch(f"Patient/{pid}", [{"op": "replace", "path": "/gender", "value": "mail"}])
    assert invalid.status_code == 400
    assert any("gender" in e for i in invalid.get_json()["issue"] for e in i.get("expression", []))
    renamed = api.patch(f"Patient/{pid}", [{"op": "replace", "path": "/id", "value": "x"}])
    assert renamed.status_code == 422
    stale = api.patch(f"Patient/{pid}", ops, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412


def test_conditional_create(api: Api) -> None:
    condition = {"If-None-Exist": "identifier=urn:oid:1.2.3|c1"}
    first = api.post("Patient", patient("c1"), headers=condition)
    assert first.status_code == 201
    again = api.post("Patient", patient("c1"), headers=condition)
    assert again.status_code == 200
    assert created_id(again) == created_id(first)
    api.post("Patient", patient("dup"))
    api.post("Patient", patient("dup"))
    multiple = api.post(
        "Patient", patient("dup"), headers={"If-None-Exist": "identifier=urn:oid:1.2.3|dup"}
    )
    assert multiple.status_code == 412
    by_id = api.post("Patient", patient("z"), headers={"If-None-Exist": f"_id={created_id(first)}"})
    assert by_id.status_code == 200
    # Any search is a condition; one the server cannot read is an error, never ignored.
    by_name = {"If-None-Exist": "name=张"}
    assert api.post("Patient", patient("z"), headers=by_name).status_code == 412
    her = patient("f", gender="female", birthDate="1990-05-01")
    by_gender = {"If-None-Exist": "gender=female&birthdate=1990"}
    assert api.post("Patient", her, headers=by_gender).status_code == 201
    assert api.post("Patient", her, headers=by_gender).status_code == 200
    unknown = api.post("Patient", patient("z"), headers={"If-None-Exist": "nickname=zhang"})
    assert unknown.status_code == 400
    assert "nickname" in unknown.get_json()["issue"][0]["diagnostics"]
    shaping = api.post("Patient", patient("z"), headers={"If-None-Exist": "_count=1"})
    assert shaping.status_code == 400


def test_conditional_update_and_delete(api: Api) -> None:
    made = api.put("Patient?identifier=urn:oid:1.2.3|u1", patient("u1"))
    assert made.status_code == 201
    pid = created_id(made)
    updated = api.put("Patient?identifier=urn:oid:1.2.3|u1", patient("u1", gender="female"))
    assert updated.status_code == 200
    assert created_id(updated) == pid
    assert updated.headers["ETag"] == 'W/"2"'
    clash = api.put("Patient?identifier=urn:oid:1.2.3|u1", patient("u1", id="someone-else"))
    assert clash.status_code == 400
    api.post("Patient", patient("two"))
    api.post("Patient", patient("two"))
    assert api.put("Patient?identifier=urn:oid:1.2.3|two", patient("two")).status_code == 412
    assert api.delete("Patient?identifier=urn:oid:1.2.3|two").status_code == 412
    assert api.delete("Patient?identifier=urn:oid:1.2.3|u1").status_code == 204
    assert api.get(f"Patient/{pid}").status_code == 410
    nothing = api.delete("Patient?identifier=urn:oid:1.2.3|nobody")
    assert nothing.status_code == 200
    assert nothing.get_json()["issue"][0]["severity"] == "information"
    assert api.put("Patient", patient()).status_code == 400


def test_prefer_return(api: Api) -> None:
    minimal = api.post("Patient", patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201
    assert minimal.data == b""
    assert minimal.headers["Location"]
    outcome = api.post("Patient", patient(), headers={"Prefer": "return=OperationOutcome"})
    assert outcome.get_json()["resourceType"] == "OperationOutcome"
    full = api.post("Patient", patient(), headers={"Prefer": "return=representation"})
    assert full.get_json()["resourceType"] == "Patient"


def test_format_and_accept(api: Api) -> None:
    pid = created_id(api.post("Patient", patient()))
    assert api.get(f"Patient/{pid}?_format=json").status_code == 200
    assert api.get(f"Patient/{pid}?_format=application/fhir+json").status_code == 200
    assert api.get(f"Patient/{pid}?_format=xml").status_code == 406
    assert api.get(f"Patient/{pid}", headers={"Accept": "application/fhir+xml"}).status_code == 406
    assert api.get(f"Patient/{pid}", headers={"Accept": "application/fhir+json"}).status_code == 200


def test_search_by_id_and_identifier(api: Api) -> None:
    ids = [created_id(api.post("Patient", patient(f"s{n}"))) for n in range(3)]
    api.post("Patient", {"resourceType": "Patient", "identifier": [{"value": "nosys"}]})
    by_id = api.get(f"Patient?_id={ids[0]},{ids[2]}").get_json()
    assert by_id["type"] == "searchset"
    assert by_id["total"] == 2
    assert {e["resource"]["id"] for e in by_id["entry"]} == {ids[0], ids[2]}
    assert all(e["search"]["mode"] == "match" for e in by_id["entry"])
    assert api.get("Patient?identifier=urn:oid:1.2.3|s1").get_json()["total"] == 1
    assert api.get("Patient?identifier=s1").get_json()["total"] == 1
    assert api.get("Patient?identifier=urn:oid:1.2.3|").get_json()["total"] == 3
    assert api.get("Patient?identifier=|nosys").get_json()["total"] == 1
    assert api.get("Patient?identifier=|s1").get_json()["total"] == 0
    assert api.get("Patient?identifier=s1&_id=" + ids[1]).get_json()["total"] == 1
    assert api.get("Patient?identifier=s1&identifier=s2").get_json()["total"] == 0
    counted = api.get("Patient?_summary=count").get_json()
    assert counted["total"] == 4
    assert "entry" not in counted


def test_search_paging_and_warnings(api: Api) -> None:
    for n in range(5):
        api.post("Patient", patient(f"p{n}"))
    page = api.get("Patient?_count=2&unknownparam=1").get_json()
    assert len([e for e in page["entry"] if e["search"]["mode"] == "match"]) == 2
    outcome = [e for e in page["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome
    assert "unknownparam" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    urls = [e["fullUrl"] for e in page["entry"] if "fullUrl" in e]
    while True:
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        page = api.get(nxt[0].split("/fhir/", 1)[1]).get_json()
        urls += [e["fullUrl"] for e in page.get("entry", []) if "fullUrl" in e]
    assert len(urls) == 5
    assert len(set(urls)) == 5
    strict = api.get("Patient?unknownparam=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert api.get("Patient?_count=many").status_code == 400


def test_post_search_form_encoded(api: Api) -> None:
    api.post("Patient", patient("form"))
    r = api.client.post(
        "/fhir/Patient/_search",
        data="identifier=urn:oid:1.2.3|form",
        headers={
            "Authorization": f"Bearer {api.token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert r.status_code == 200
    assert r.get_json()["total"] == 1


def test_metadata_is_public_and_truthful(api: Api) -> None:
    r = api.client.get("/fhir/metadata")
    assert r.status_code == 200
    cs = r.get_json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    resources = {res["type"]: res for res in cs["rest"][0]["resource"]}
    assert "Patient" in resources
    assert "SubscriptionTopic" not in resources, "R4B-only types are not served"
    names = {p["name"] for p in resources["Patient"]["searchParam"]}
    assert {"_id", "identifier"} <= names
    assert {i["code"] for i in cs["rest"][0]["interaction"]} == {
        "transaction",
        "batch",
        "history-system",
    }


def test_validate_operation(api: Api) -> None:
    ok = api.post("Patient/$validate", patient())
    assert ok.status_code == 200
    assert ok.get_json()["issue"][0]["severity"] == "information"
    bad = api.post("Patient/$validate", patient(gender="mail"))
    assert bad.status_code == 400
    assert any("gender" in e for i in bad.get_json()["issue"] for e in i.get("expression", []))
    pid = created_id(api.post("Patient", patient()))
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": patient(id=pid)},
            {"name": "mode", "valueCode": "update"},
        ],
    }
    assert api.post(f"Patient/{pid}/$validate", params).status_code == 200
    stored = api.get(f"Patient/{pid}/$validate")
    assert stored.status_code == 200
    assert api.get("Patient/none/$validate").status_code == 404


def test_authentication_and_scopes(api: Api, services: Any) -> None:
    pid = created_id(api.post("Patient", patient()))
    anonymous = api.client.get(f"/fhir/Patient/{pid}")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    tampered = api.get(f"Patient/{pid}", token=api.token[:-4] + "AAAA")
    assert tampered.status_code == 401
    reader = services.issuer.issue(subject="r", scope="system/Patient.rs", ttl=60)
    assert api.get(f"Patient/{pid}", token=reader).status_code == 200
    denied = api.post("Patient", patient(), token=reader)
    assert denied.status_code == 403
    assert denied.get_json()["issue"][0]["code"] == "forbidden"
    assert api.get("Observation?_id=x", token=reader).status_code == 403
    v1 = services.issuer.issue(subject="r", scope="user/*.read", ttl=60)
    assert api.get(f"Patient/{pid}", token=v1).status_code == 200
    assert api.delete(f"Patient/{pid}", token=v1).status_code == 403
    key = load_or_create_signing_key(services.settings.data_dir)
    past = TokenIssuer(
        key, issuer="hie", audience="hie", clock=lambda: datetime.now(UTC) - timedelta(hours=2)
    )
    expired = api.get(
        f"Patient/{pid}", token=past.issue(subject="r", scope="system/*.cruds", ttl=60)
    )
    assert expired.status_code == 401
    assert "expired" in expired.get_json()["issue"][0]["diagnostics"]
    other_audience = TokenIssuer(
        key, issuer="hie", audience="elsewhere", clock=lambda: datetime.now(UTC)
    )
    wrong = api.get(
        f"Patient/{pid}", token=other_audience.issue(subject="r", scope="system/*.cruds", ttl=60)
    )
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "raw", "headers", "status"),
    [
        ("POST", "Patient", b"{not json", {}, 400),
        ("POST", "Patient", b"[1,2]", {}, 400),
        ("POST", "Patient", b"", {}, 400),
        ("POST", "Patient", b'{"resourceType":"Observation","status":"final","code":{}}', {}, 400),
        ("POST", "Patient", b'{"resourceType":"Patient"}', {"Content-Type": "text/plain"}, 415),
        (
            "POST",
            "Patient",
            b'{"resourceType":"Patient"}',
            {"Content-Type": "application/fhir+xml"},
            415,
        ),
        ("POST", "Flubber", b'{"resourceType":"Flubber"}', {}, 404),
        ("POST", "Patient", b'{"resourceType":"Patient","flavour":"sweet"}', {}, 400),
        ("POST", "Patient", b'{"resourceType":"Patient","gender":"mail"}', {}, 400),
        ("POST", "Patient", b'{"resourceType":"Patient","birthDate":"1990-13-45"}', {}, 400),
        ("DELETE", "Patient/x/_history/1", b"", {}, 405),
        ("GET", "Patient/x/extra/path", b"", {}, 404),
        ("POST", "", b'{"resourceType":"Bundle","type":"collection"}', {}, 400),
    ],
)
def test_bad_input_gets_specific_outcomes(
    api: Api, method: str, path: str, raw: bytes, headers: dict[str, str], status: int
) -> None:
    r = api.request(method, path, headers=headers, raw=raw)
    assert r.status_code == status
    body = r.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]


def test_invalid_elements_name_their_path(api: Api) -> None:
    r = api.post("Patient", {"resourceType": "Patient", "name": [{"family": "A"}, {"given": [1]}]})
    assert r.status_code == 400
    expressions = [e for i in r.get_json()["issue"] for e in i.get("expression", [])]
    assert any(e.startswith("Patient.name[1].given") for e in expressions), expressions


def test_oversized_body_is_413(services: Any, token: str) -> None:
    small = create_app(services.settings.replace(http__max_body_bytes=100), services=services)
    client = small.test_client()
    r = client.post(
        "/fhir/Patient",
        data=b'{"resourceType":"Patient","text":"' + b"x" * 200 + b'"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    assert r.status_code == 413
    assert r.get_json()["issue"][0]["code"] == "too-long"


def test_healthz(api: Api) -> None:
    assert api.client.get("/healthz").get_json() == {"status": "ok"}
