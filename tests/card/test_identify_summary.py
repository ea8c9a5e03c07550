"""POST /card/v1/identify with "summary": the reader sees the shared record only as the
consent policy lets its organisation see it (SQLite and PostgreSQL, real tokens)."""

from __future__ import annotations

from typing import Any

from tests.card.conftest import CardApi, holder, problem_type
from tests.card.test_readers import _qr

H, B, C = "Organization/hosp-h", "Organization/hosp-b", "Organization/hosp-c"
READER = "card.identify system/*.rs"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _put(card_api: CardApi, org: str, body: dict[str, Any]) -> None:
    token = card_api.services.issuer.issue(
        subject=f"his-{org}", scope="system/*.cruds", ttl=600, organization=org
    )
    res = card_api.client.put(
        f"/fhir/{body['resourceType']}/{body['id']}",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    assert res.status_code == 201, res.get_json()


def _condition(cid: str, patient: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "code": {"text": text},
        "subject": {"reference": patient},
        **extra,
    }


def _summary(card_api: CardApi, card_no: str, org: str, scope: str = READER) -> dict[str, Any]:
    res = card_api.call(
        "POST", "/identify", {"card_no": card_no, "summary": True}, scope=scope, org=org
    )
    assert res.status_code == 200, res.get_json()
    body: dict[str, Any] = res.get_json()
    return body["summary"]


def _texts(summary: dict[str, Any], section: str) -> set[str]:
    return {i["text"] for i in summary[section]}


def test_summary_shows_only_what_consent_or_a_grant_opens(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    patient, no = issued["patient"], issued["card_no"]
    _put(card_api, H, _condition("h-asthma", patient, "asthma"))
    hiv = _condition(
        "h-hiv", patient, "HIV infection", meta={"security": [{"system": ACT, "code": "HIV"}]}
    )
    _put(card_api, H, hiv)
    _put(
        card_api,
        B,
        {
            "resourceType": "AllergyIntolerance",
            "id": "b-pen",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {"text": "penicillin"},
            "patient": {"reference": patient},
        },
    )
    _put(
        card_api,
        H,
        {
            "resourceType": "MedicationRequest",
            "id": "h-salbutamol",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "salbutamol"},
            "subject": {"reference": patient},
        },
    )
    # Without consent or grant: B sees its own allergy record, nothing of H's.
    before = _summary(card_api, no, B)
    assert _texts(before, "allergies") == {"penicillin"}
    assert before["conditions"] == []
    assert before["medications"] == []
    # Checked in at B: a card-presented grant opens H's records, but not the HIV one.
    res = card_api.call("POST", "/check-in", {"card_no": no}, scope="card.identify", org=B)
    assert res.status_code == 201
    after = _summary(card_api, no, B)
    assert _texts(after, "conditions") == {"asthma"}
    assert _texts(after, "medications") == {"salbutamol"}
    assert after["conditions"][0]["custodian"] == H
    assert "HIV" not in str(after)
    # C has neither; a resident's card consent for Conditions opens only those.
    assert _summary(card_api, no, C)["conditions"] == []
    consent = card_api.call(
        "POST",
        "/consents",
        {"qr": _qr(card_api, no), "action": "permit", "actor": C, "class": ["Condition"]},
        scope="card.consent",
        org=C,
    )
    assert consent.status_code == 201, consent.get_json()
    seen = _summary(card_api, no, C)
    assert _texts(seen, "conditions") == {"asthma"}
    assert seen["medications"] == []
    assert seen["allergies"] == []
    # The summary is shown by default never: plain identify carries none.
    plain = card_api.call("POST", "/identify", {"card_no": no}, scope=READER, org=C)
    assert "summary" not in plain.get_json()


def test_a_summary_needs_clinical_scopes_and_keeps_the_token(card_api: CardApi) -> None:
    no = card_api.issue(holder())["card_no"]
    token = _qr(card_api, no)
    res = card_api.call(
        "POST", "/identify", {"qr": token, "summary": True}, scope="card.identify", org=B
    )
    assert res.status_code == 403
    assert problem_type(res) == "insufficient-scope"
    res = card_api.call("POST", "/identify", {"qr": token, "summary": "yes"}, scope=READER, org=B)
    assert problem_type(res) == "bad-request"
    # the token was not spent by either refusal
    res = card_api.call("POST", "/identify", {"qr": token, "summary": True}, scope=READER, org=B)
    assert res.status_code == 200, res.get_json()
    assert set(res.get_json()["summary"]) == {"allergies", "conditions", "medications"}
