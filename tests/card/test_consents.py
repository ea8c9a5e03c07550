"""POST/GET /card/v1/consents: a resident, proven present by a fresh QR token, records and
withdraws their own Consents; other organisations' reads follow at once (SQLite and PG)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from card.qr import QrTokens
from hie.app import Services
from tests.card.conftest import CardApi, Clock, holder, problem_type
from tests.card.test_readers import _qr

A = "Organization/hosp-a"
B = "Organization/hosp-b"
SCOPE = "card.consent"


def _fhir(card_api: CardApi, org: str | None, scope: str = "system/*.cruds") -> Any:
    token = card_api.services.issuer.issue(
        subject=f"his-{org}", scope=scope, ttl=600, organization=org, purpose="TREAT"
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    class Client:
        def get(self, path: str) -> Any:
            return card_api.client.get(f"/fhir/{path}", headers=headers)

        def put(self, path: str, body: dict[str, Any]) -> Any:
            return card_api.client.put(f"/fhir/{path}", json=body, headers=headers)

    return Client()


def _observation(oid: str, patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": patient},
        "effectiveDateTime": "2026-03-01T08:00:00Z",
        **extra,
    }


def _consent(card_api: CardApi, card_no: str, body: dict[str, Any]) -> Any:
    return card_api.call(
        "POST", "/consents", {"qr": _qr(card_api, card_no), **body}, scope=SCOPE, org=B
    )


def test_permit_then_withdraw_takes_effect_at_once(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    patient, no = issued["patient"], issued["card_no"]
    a, b = _fhir(card_api, A), _fhir(card_api, B)
    assert a.put("Observation/hb-1", _observation("hb-1", patient)).status_code == 201
    assert b.get("Observation/hb-1").status_code == 404

    res = _consent(
        card_api,
        no,
        {"action": "permit", "actor": B, "purpose": ["TREAT"], "class": ["Observation"]},
    )
    assert res.status_code == 201, res.get_json()
    recorded = res.get_json()
    assert recorded["patient"] == patient
    assert recorded["status"] == "active"
    assert recorded["action"] == "permit"
    assert recorded["actor"] == [B]
    assert recorded["class"] == ["Observation"]
    assert recorded["by_card"] is True
    consent = recorded["consent"]
    # The FHIR resource as stored: scope patient-privacy, the enterprise Patient.
    stored = _fhir(card_api, None).get(consent).get_json()
    assert stored["scope"]["coding"][0]["code"] == "patient-privacy"
    assert stored["patient"]["reference"] == patient
    assert stored["provision"]["actor"][0]["reference"]["reference"] == B

    assert b.get("Observation/hb-1").status_code == 200
    # permits Observations only
    assert b.get(patient).status_code == 404

    res = _consent(card_api, no, {"withdraw": consent})
    assert res.status_code == 200, res.get_json()
    assert res.get_json()["status"] == "inactive"
    assert res.get_json()["version"] == 2
    assert b.get("Observation/hb-1").status_code == 404  # the very next request
    assert b.get("Observation?subject=" + patient).get_json()["total"] == 0

    again = _consent(card_api, no, {"withdraw": consent})
    assert again.status_code == 409
    assert problem_type(again) == "consent-not-active"

    listed = card_api.call("GET", f"/consents?qr={_qr(card_api, no)}", scope=SCOPE, org=B)
    assert listed.status_code == 200, listed.get_json()
    [only] = listed.get_json()["consents"]
    assert only["consent"] == consent
    assert only["status"] == "inactive"


def test_a_deny_wins_over_a_hospital_recorded_permit(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    patient, no = issued["patient"], issued["card_no"]
    a, b = _fhir(card_api, A), _fhir(card_api, B)
    assert a.put("Observation/hb-2", _observation("hb-2", patient)).status_code == 201
    recorder = _fhir(card_api, A, "system/*.cruds consent.record")
    general = {
        "resourceType": "Consent",
        "id": "hosp-permit",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": patient},
        "policyRule": {"coding": [{"code": "OPTIN"}]},
        "provision": {"type": "permit"},
    }
    assert recorder.put("Consent/hosp-permit", general).status_code == 201
    assert b.get("Observation/hb-2").status_code == 200
    res = _consent(
        card_api, no, {"action": "deny", "actor": [B], "period": {"start": "2026-01-01"}}
    )
    assert res.status_code == 201, res.get_json()
    assert b.get("Observation/hb-2").status_code == 404
    # The resident sees both, and may withdraw the hospital's too.
    listed = card_api.call("GET", f"/consents?qr={_qr(card_api, no)}", scope=SCOPE, org=B)
    views = {c["consent"]: c for c in listed.get_json()["consents"]}
    assert views["Consent/hosp-permit"]["by_card"] is False
    assert views[res.get_json()["consent"]]["action"] == "deny"
    withdrawn = _consent(card_api, no, {"withdraw": "Consent/hosp-permit"})
    assert withdrawn.status_code == 200, withdrawn.get_json()
    withdrawn_deny = _consent(card_api, no, {"withdraw": res.get_json()["consent"]})
    assert withdrawn_deny.status_code == 200
    assert b.get("Observation/hb-2").status_code == 404  # nothing permits any more


def test_only_the_residents_own_consents_can_be_withdrawn(card_api: CardApi) -> None:
    one = card_api.issue(holder())
    two = card_api.issue(holder(seq=124, name="李娜"))
    theirs = _consent(card_api, two["card_no"], {"action": "permit", "actor": B})
    assert theirs.status_code == 201
    res = _consent(card_api, one["card_no"], {"withdraw": theirs.get_json()["consent"]})
    assert res.status_code == 404
    assert problem_type(res) == "consent-not-found"
    res = _consent(card_api, one["card_no"], {"withdraw": "Consent/nope"})
    assert problem_type(res) == "consent-not-found"
    assert _consent(card_api, one["card_no"], {"withdraw": "Observation/1"}).status_code == 400


def test_qr_tokens_are_checked_as_identify_does(card_api: CardApi, clock: Clock) -> None:
    no = card_api.issue(holder())["card_no"]
    body = {"action": "permit", "actor": B}
    token = _qr(card_api, no)
    ok = card_api.call("POST", "/consents", {"qr": token, **body}, scope=SCOPE, org=B)
    assert ok.status_code == 201
    reused = card_api.call("POST", "/consents", {"qr": token, **body}, scope=SCOPE, org=B)
    assert problem_type(reused) == "qr-reused"
    token = _qr(card_api, no)
    clock.advance(61)
    expired = card_api.call("POST", "/consents", {"qr": token, **body}, scope=SCOPE, org=B)
    assert problem_type(expired) == "qr-expired"
    forger = QrTokens(Ed25519PrivateKey.generate(), issuer="hie", ttl=60, clock=clock)
    forged = card_api.call(
        "POST", "/consents", {"qr": forger.issue(no)[0], **body}, scope=SCOPE, org=B
    )
    assert problem_type(forged) == "qr-invalid"
    # a card number is not enough: the resident must show a fresh token
    by_no = card_api.call("POST", "/consents", {"card_no": no, **body}, scope=SCOPE, org=B)
    assert problem_type(by_no) == "bad-request"
    wrong_scope = card_api.call(
        "POST", "/consents", {"qr": _qr(card_api, no), **body}, scope="card.identify", org=B
    )
    assert problem_type(wrong_scope) == "insufficient-scope"
    listed = card_api.call("GET", "/consents", scope=SCOPE, org=B)
    assert problem_type(listed) == "bad-request"


def test_malformed_requests_do_not_spend_the_token(card_api: CardApi) -> None:
    no = card_api.issue(holder())["card_no"]
    token = _qr(card_api, no)
    bad: list[dict[str, Any]] = [
        {"action": "allow"},
        {"action": "permit", "actor": "Hospital B"},
        {"action": "permit", "class": ["NotAType"]},
        {"action": "permit", "period": {"start": "2026-02-30"}},
        {"action": "permit", "period": {"start": "2026-05-01", "end": "2026-04-01"}},
        {"action": "permit", "purpose": []},
        {"action": "permit", "colour": "blue"},
    ]
    for body in bad:
        res = card_api.call("POST", "/consents", {"qr": token, **body}, scope=SCOPE, org=B)
        assert res.status_code == 400, (body, res.get_json())
        assert problem_type(res) == "bad-request"
    res = card_api.call("POST", "/consents", {"qr": token, "action": "permit"}, scope=SCOPE, org=B)
    assert res.status_code == 201, res.get_json()


def test_consent_operations_are_audited_as_card_operations(
    card_api: CardApi, card_services: Services
) -> None:
    issued = card_api.issue(holder())
    recorded = _consent(card_api, issued["card_no"], {"action": "permit", "actor": B})
    _consent(card_api, issued["card_no"], {"withdraw": recorded.get_json()["consent"]})
    # The resident's access log tells them in plain language.
    log = card_api.call(
        "GET", f"/access-log?qr={_qr(card_api, issued['card_no'])}", scope="card.identify"
    )
    labels = {e["actionLabel"]["en"] for e in log.get_json()["entries"]}
    assert {"recorded your consent decision", "withdrew a consent at your request"} <= labels
    auditor = _fhir(card_api, None, "system/AuditEvent.rs")
    for subtype in ("card.consent-record", "card.consent-withdraw"):
        found = auditor.get(f"AuditEvent?subtype={subtype}").get_json()
        entries = found.get("entry", [])
        assert len(entries) == 1, (subtype, found)
        event = entries[0]["resource"]
        assert event["subtype"][0]["code"] == subtype
        agents = [a.get("who", {}).get("reference") for a in event["agent"]]
        assert B in str(event["agent"]), agents
        assert recorded.get_json()["consent"] in str(event["entity"])
