"""Issuing cards and their life: POST /cards, GET /cards/{no}, loss, replacement,
cancellation and freezing, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from card import card_number
from card.service import CARD_NUMBER_SYSTEM, CARD_SOURCE_TAG
from hie.app import build_services, create_app
from hie.context import RequestContext
from hie.settings import Settings
from tests.card.conftest import CardApi, holder, problem_type, resident_id


def card_source_patient(card_api: CardApi, card_no: str) -> dict[str, Any] | None:
    """The Patient the card service wrote for a card number (not the enterprise one)."""
    found = card_api.services.exchange.search_resources(
        RequestContext.system(), "Patient", [("identifier", f"{CARD_NUMBER_SYSTEM}|{card_no}")]
    )
    mine = [p for p in found if CARD_SOURCE_TAG in p.get("meta", {}).get("tag", [])]
    assert len(mine) <= 1
    return mine[0] if mine else None


def test_issue_returns_number_patient_and_status(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    assert card_number.is_valid(issued["card_no"])
    assert issued["status"] == "active"
    assert issued["patient"].startswith("Patient/")
    # the card-source Patient carries both identifiers
    patient = card_source_patient(card_api, issued["card_no"])
    assert patient is not None
    systems = {i["system"]: i["value"] for i in patient["identifier"]}
    assert systems["urn:hie:mianzhou-pass"] == issued["card_no"]
    # the number is there (masked or sealed on the way out once the identity work protects it)
    assert systems["urn:oid:2.16.156.10011.1.3"][-4:] == resident_id()[-4:]
    assert patient["birthDate"] == "1980-01-01"
    # held by the card authority, not by the issuing office
    stored = card_api.services.exchange.read(RequestContext.system(), "Patient", patient["id"])
    assert stored.custodian == "Organization/mianzhou-pass"


def test_second_active_card_is_409_and_numbers_differ(card_api: CardApi) -> None:
    first = card_api.issue(holder())
    res = card_api.call("POST", "/cards", holder(), scope="card.issue")
    assert res.status_code == 409
    assert problem_type(res) == "card-already-issued"
    other = card_api.issue(holder(seq=124, name="李娜"))
    assert other["card_no"] != first["card_no"]
    assert other["patient"] != first["patient"]


def test_demographics_must_agree_with_the_id(card_api: CardApi) -> None:
    res = card_api.call("POST", "/cards", holder(birth_date="1980-01-02"), scope="card.issue")
    assert res.status_code == 422
    assert problem_type(res) == "demographics-mismatch"
    assert "1980-01-01" in res.get_json()["detail"]
    res = card_api.call("POST", "/cards", holder(gender="female"), scope="card.issue")
    assert res.status_code == 422
    assert problem_type(res) == "demographics-mismatch"
    bad = holder(resident_id=resident_id()[:-1] + "0")
    res = card_api.call("POST", "/cards", bad, scope="card.issue")
    assert res.status_code == 422
    assert problem_type(res) == "invalid-resident-id"
    assert "check digit should be" in res.get_json()["detail"]


def test_bad_requests_and_scopes(card_api: CardApi) -> None:
    res = card_api.call("POST", "/cards", holder(), scope="card.read")
    assert res.status_code == 403
    assert problem_type(res) == "insufficient-scope"
    res = card_api.client.post("/card/v1/cards", data=b"{}")
    assert res.status_code == 401
    assert problem_type(res) == "unauthorized"
    res = card_api.call("POST", "/cards", {"name": "x"}, scope="card.issue")
    assert res.status_code == 400
    assert problem_type(res) == "bad-request"
    res = card_api.call("POST", "/cards", holder(gender="x"), scope="card.issue")
    assert problem_type(res) == "bad-request"
    res = card_api.client.post(
        "/card/v1/cards",
        data=b"{not json",
        headers={"Authorization": f"Bearer {card_api.token('card.issue')}"},
    )
    assert res.status_code == 400
    assert problem_type(res) == "bad-request"
    res = card_api.call("GET", "/cards/1234", scope="card.read")
    assert res.status_code == 400
    assert problem_type(res) == "invalid-card-number"
    res = card_api.call("GET", "/cards/" + card_number.make(999), scope="card.read")
    assert res.status_code == 404
    assert problem_type(res) == "card-not-found"
    res = card_api.call("GET", "/nowhere", scope="card.read")
    assert res.status_code == 404
    assert problem_type(res) == "not-found"
    res = card_api.call("DELETE", "/cards/" + card_number.make(1), scope="card.read")
    assert res.status_code == 405
    assert problem_type(res) == "method-not-allowed"


def test_get_shows_status_masked_holder_and_history(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    res = card_api.call("GET", f"/cards/{issued['card_no']}", scope="card.read")
    assert res.status_code == 200
    body = res.get_json()
    assert body["status"] == "active"
    assert body["patient"] == issued["patient"]
    assert body["holder"]["resident_id"] == "510703********" + resident_id()[-4:]
    assert body["holder"]["phone"] == "138****5678"
    assert body["holder"]["name"] == "张*"
    assert [e["action"] for e in body["history"]] == ["issue"]
    assert resident_id() not in res.get_data(as_text=True)


def test_loss_replacement_keeps_the_person_and_retires_the_number(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    old = issued["card_no"]
    res = card_api.call(
        "POST", f"/cards/{old}/report-loss", {"reason": "wallet"}, scope="card.manage"
    )
    assert res.status_code == 200
    assert res.get_json()["status"] == "lost"
    res = card_api.call("POST", f"/cards/{old}/replace", {}, scope="card.manage")
    assert res.status_code == 200
    body = res.get_json()
    assert body["status"] == "replaced"
    new = body["new_card"]["card_no"]
    assert new != old
    assert body["replaced_by"] == new
    assert body["new_card"]["patient"] == issued["patient"]
    history = card_api.call("GET", f"/cards/{old}", scope="card.read").get_json()["history"]
    assert [(e["action"], e["status"]) for e in history] == [
        ("issue", "active"),
        ("report-loss", "lost"),
        ("replace", "replaced"),
    ]
    fresh = card_api.call("GET", f"/cards/{new}", scope="card.read").get_json()
    assert fresh["replaces"] == old
    assert fresh["patient"] == issued["patient"]
    # the old number identifies nobody; the new one the same person
    res = card_api.call("POST", "/identify", {"card_no": old}, scope="card.identify")
    assert res.status_code == 403
    assert problem_type(res) == "card-replaced"
    res = card_api.call("POST", "/identify", {"card_no": new}, scope="card.identify")
    assert res.get_json()["patient"] == issued["patient"]
    # the same card-source Patient now carries the new number only
    assert card_source_patient(card_api, old) is None
    patient = card_source_patient(card_api, new)
    assert patient is not None
    numbers = [i["value"] for i in patient["identifier"] if i["system"] == CARD_NUMBER_SYSTEM]
    assert numbers == [new]
    # a replaced card cannot change again; a second card is still refused
    res = card_api.call("POST", f"/cards/{old}/cancel", {"reason": "x"}, scope="card.manage")
    assert res.status_code == 409
    assert problem_type(res) == "invalid-transition"
    res = card_api.call("POST", "/cards", holder(), scope="card.issue")
    assert problem_type(res) == "card-already-issued"


def test_cancel_needs_reason_and_allows_a_new_card_later(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    no = issued["card_no"]
    res = card_api.call("POST", f"/cards/{no}/cancel", {}, scope="card.manage")
    assert res.status_code == 400
    assert problem_type(res) == "bad-request"
    res = card_api.call(
        "POST", f"/cards/{no}/cancel", {"reason": "emigration"}, scope="card.manage"
    )
    assert res.get_json()["status"] == "cancelled"
    assert res.get_json()["reason"] == "emigration"
    res = card_api.call("POST", "/identify", {"card_no": no}, scope="card.identify")
    assert problem_type(res) == "card-cancelled"
    again = card_api.issue(holder())
    assert again["patient"] == issued["patient"]
    assert again["card_no"] != no


def test_freeze_and_unfreeze(card_api: CardApi) -> None:
    no = card_api.issue(holder())["card_no"]
    res = card_api.call(
        "POST", f"/cards/{no}/freeze", {"reason": "fraud check"}, scope="card.manage"
    )
    assert res.get_json()["status"] == "frozen"
    res = card_api.call("POST", "/identify", {"card_no": no}, scope="card.identify")
    assert res.status_code == 403
    assert problem_type(res) == "card-frozen"
    res = card_api.call("POST", f"/cards/{no}/freeze", None, scope="card.manage")
    assert problem_type(res) == "invalid-transition"
    res = card_api.call("POST", f"/cards/{no}/unfreeze", None, scope="card.manage")
    assert res.get_json()["status"] == "active"
    res = card_api.call("POST", f"/cards/{no}/report-loss", None, scope="card.read")
    assert problem_type(res) == "insufficient-scope"


def test_parallel_issues_for_one_resident_make_one_card(card_api: CardApi) -> None:
    token = card_api.token("card.issue")

    def issue(_: int) -> int:
        client = card_api.client.application.test_client()
        res = client.post(
            "/card/v1/cards", json=holder(), headers={"Authorization": f"Bearer {token}"}
        )
        return int(res.status_code)

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(issue, range(6)))
    assert codes == [201, 409, 409, 409, 409, 409]


def test_malformed_input_is_a_problem_never_a_500(card_api: CardApi) -> None:
    no = card_api.issue(holder())["card_no"]
    cases = [
        ("POST", "/cards", [1, 2], "card.issue"),
        ("POST", "/cards", {"resident_id": 5107, "name": "x"}, "card.issue"),
        ("POST", "/cards", holder(name=["张伟"]), "card.issue"),
        ("POST", "/cards", holder(name="x" * 100), "card.issue"),
        ("POST", "/cards", holder(birth_date="1980-13-01"), "card.issue"),
        ("POST", "/cards", holder(resident_id="'; DROP TABLE card; --"), "card.issue"),
        ("POST", "/identify", {"card_no": 5107}, "card.identify"),
        ("POST", "/identify", {"qr": 12}, "card.identify"),
        ("POST", "/identify", "text", "card.identify"),
        ("POST", "/check-in", [], "card.identify"),
        ("POST", f"/cards/{no}/cancel", {"reason": 7}, "card.manage"),
        ("POST", f"/cards/{no}/freeze", [1], "card.manage"),
        ("GET", "/identity/resolve?card_no=abc", "card.identity"),
        ("GET", "/identity/resolve?resident_id=abc&card_no=1", "card.identity"),
        ("POST", "/identity/verify", {"resident_id": None, "name": "x"}, "card.identity"),
    ]
    for case in cases:
        method, path, *rest = case
        body, scope = (None, rest[0]) if len(rest) == 1 else (rest[0], rest[1])
        res = card_api.call(method, path, body, scope=scope)
        assert 400 <= res.status_code < 500, (case, res.get_json())
        problem_type(res)
    res = card_api.call("GET", f"/cards/{no}", scope="card.read")
    assert res.get_json()["status"] == "active"


def test_patient_is_enterprise_with_the_index_and_source_without(
    card_api: CardApi, db_url: str, tmp_path: Path
) -> None:
    issued = card_api.issue(holder())
    source = card_source_patient(card_api, issued["card_no"])
    assert source is not None
    # the index links the card-source Patient to a different, enterprise Patient
    assert issued["patient"] != f"Patient/{source['id']}"
    ctx = RequestContext.system()
    assert (
        card_api.services.exchange.enterprise_of(ctx, f"Patient/{source['id']}")
        == (issued["patient"])
    )
    settings = Settings().replace(
        database__url=db_url, data__dir=str(tmp_path / "plain"), identity__enabled=False
    )
    plain = build_services(settings)
    try:
        api = CardApi(create_app(services=plain).test_client(), plain)
        other = api.issue(holder(seq=124, name="李娜"))
        found = card_source_patient(api, other["card_no"])
        assert found is not None
        assert other["patient"] == f"Patient/{found['id']}"
    finally:
        plain.close()
