"""Readers: identify by card number or dynamic QR token, and check-in with its grant."""

from __future__ import annotations

import base64
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from card.qr import QrTokens
from hie.app import build_services, create_app
from hie.audit.event import event_of
from hie.context import RequestContext
from hie.settings import Settings
from hie.storage.sql.store import from_us
from tests.card.conftest import ORG, OTHER_ORG, CardApi, Clock, holder, problem_type, resident_id


def _qr(card_api: CardApi, card_no: str) -> str:
    res = card_api.call("POST", f"/cards/{card_no}/qr", scope="card.read")
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert body["expires_in"] == 60
    return str(body["qr"])


def test_identify_by_card_number_masks_demographics(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    res = card_api.call("POST", "/identify", {"card_no": issued["card_no"]}, scope="card.identify")
    assert res.status_code == 200
    body = res.get_json()
    assert body["patient"] == issued["patient"]
    assert body["status"] == "active"
    assert body["holder"] == {
        "name": "张*",
        "gender": "male",
        "birth_year": 1980,
        "resident_id": resident_id()[:6] + "********" + resident_id()[-4:],
        "phone": "138****5678",
    }
    # spaced display form is accepted
    spaced = " ".join(issued["card_no"][i : i + 4] for i in range(0, 16, 4))
    res = card_api.call("POST", "/identify", {"card_no": spaced}, scope="card.identify")
    assert res.get_json()["card_no"] == issued["card_no"]


def test_identify_refusals(card_api: CardApi) -> None:
    no = card_api.issue(holder())["card_no"]
    res = card_api.call("POST", "/identify", {"card_no": no}, scope="card.read")
    assert problem_type(res) == "insufficient-scope"
    res = card_api.call("POST", "/identify", {}, scope="card.identify")
    assert problem_type(res) == "bad-request"
    res = card_api.call("POST", "/identify", {"card_no": no, "qr": "x"}, scope="card.identify")
    assert problem_type(res) == "bad-request"
    res = card_api.call("POST", "/identify", {"card_no": no[:-1] + "x"}, scope="card.identify")
    assert problem_type(res) == "invalid-card-number"
    card_api.call("POST", f"/cards/{no}/report-loss", None, scope="card.manage")
    res = card_api.call("POST", "/identify", {"card_no": no}, scope="card.identify")
    assert res.status_code == 403
    assert problem_type(res) == "card-lost"


def test_qr_identifies_once(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    token = _qr(card_api, issued["card_no"])
    res = card_api.call("POST", "/identify", {"qr": token}, scope="card.identify")
    assert res.status_code == 200
    assert res.get_json()["patient"] == issued["patient"]
    res = card_api.call("POST", "/identify", {"qr": token}, scope="card.identify")
    assert res.status_code == 401
    assert problem_type(res) == "qr-reused"


def test_qr_expires(card_api: CardApi, clock: Clock) -> None:
    no = card_api.issue(holder())["card_no"]
    token = _qr(card_api, no)
    clock.advance(59)
    assert (
        card_api.call("POST", "/identify", {"qr": token}, scope="card.identify").status_code == 200
    )
    token = _qr(card_api, no)
    clock.advance(60)
    res = card_api.call("POST", "/identify", {"qr": token}, scope="card.identify")
    assert res.status_code == 401
    assert problem_type(res) == "qr-expired"


def test_forged_and_tampered_qr_refused(card_api: CardApi, clock: Clock) -> None:
    no = card_api.issue(holder())["card_no"]
    other = card_api.issue(holder(seq=124, name="李娜"))["card_no"]
    token = _qr(card_api, no)
    # another key
    forger = QrTokens(Ed25519PrivateKey.generate(), issuer="hie", ttl=60, clock=clock)
    res = card_api.call("POST", "/identify", {"qr": forger.issue(no)[0]}, scope="card.identify")
    assert problem_type(res) == "qr-invalid"
    # the payload moved to another card, keeping the signature
    head, payload, sig = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = other
    moved = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    res = card_api.call("POST", "/identify", {"qr": f"{head}.{moved}.{sig}"}, scope="card.identify")
    assert res.status_code == 401
    assert problem_type(res) == "qr-invalid"
    for junk in ("", "abc", "a.b.c"):
        res = card_api.call("POST", "/identify", {"qr": junk or "x"}, scope="card.identify")
        assert problem_type(res) == "qr-invalid"
    # an access token is not a QR token
    res = card_api.call(
        "POST", "/identify", {"qr": card_api.token("card.identify")}, scope="card.identify"
    )
    assert problem_type(res) == "qr-invalid"
    # the genuine one still works once
    assert (
        card_api.call("POST", "/identify", {"qr": token}, scope="card.identify").status_code == 200
    )


def test_qr_bound_to_card_status(card_api: CardApi) -> None:
    no = card_api.issue(holder())["card_no"]
    token = _qr(card_api, no)
    card_api.call("POST", f"/cards/{no}/cancel", {"reason": "death"}, scope="card.manage")
    res = card_api.call("POST", "/identify", {"qr": token}, scope="card.identify")
    assert problem_type(res) == "card-cancelled"
    res = card_api.call("POST", f"/cards/{no}/qr", scope="card.read")
    assert problem_type(res) == "card-cancelled"


def test_check_in_creates_encounter_and_grant(card_api: CardApi, clock: Clock) -> None:
    issued = card_api.issue(holder())
    token = _qr(card_api, issued["card_no"])
    res = card_api.call("POST", "/check-in", {"qr": token}, scope="card.identify", org=ORG)
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert body["patient"] == issued["patient"]
    exchange = card_api.services.exchange
    enc_id = body["encounter"].split("/")[1]
    encounter = orjson.loads(exchange.read(RequestContext.system(), "Encounter", enc_id).content)
    assert encounter["status"] == "arrived"
    assert encounter["subject"]["reference"] == issued["patient"]
    assert encounter["serviceProvider"]["reference"] == ORG
    grants = exchange.active_grants([issued["patient"]], ORG, clock.now + timedelta(hours=23))
    assert len(grants) == 1
    assert grants[0].purpose == "TREAT"
    assert grants[0].basis == "card-presented"
    assert grants[0].evidence == body["encounter"]
    assert exchange.active_grants([issued["patient"]], OTHER_ORG, clock.now) == []
    assert exchange.active_grants([issued["patient"]], ORG, clock.now + timedelta(hours=25)) == []
    # by card number too; a reader without an organisation is refused
    res = card_api.call(
        "POST", "/check-in", {"card_no": issued["card_no"]}, scope="card.identify", org=OTHER_ORG
    )
    assert res.status_code == 201
    res = card_api.call(
        "POST", "/check-in", {"card_no": issued["card_no"]}, scope="card.identify", org=None
    )
    assert problem_type(res) == "no-organization"


def test_card_operations_are_audited_without_identifiers(card_api: CardApi) -> None:
    issued = card_api.issue(holder())
    no = issued["card_no"]
    card_api.call("POST", "/identify", {"card_no": no}, scope="card.identify")
    card_api.call("POST", "/check-in", {"card_no": no}, scope="card.identify")
    card_api.call("POST", f"/cards/{no}/report-loss", None, scope="card.manage")
    card_api.call("POST", "/identify", {"card_no": no}, scope="card.identify")
    card_api.services.audit.close()
    with card_api.services.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT subtype, outcome, content, recorded_us FROM audit_event "
                "WHERE subtype LIKE 'card.%' ORDER BY seq"
            )
        ).all()
        everything = conn.execute(sa.text("SELECT content FROM audit_event")).all()
        refs = conn.execute(sa.text("SELECT ref FROM audit_ref")).all()
        dump = " ".join(bytes(r[0]).decode() for r in everything) + str(refs)
    pid = issued["patient"].split("/")[1]
    assert [(r[0], r[1]) for r in rows] == [
        ("card.issue", "0"),
        ("card.identify", "0"),
        ("card.check-in", "0"),
        ("card.report-loss", "0"),
        ("card.identify", "4"),
    ]
    query = base64.b64encode(f"card_no={no}".encode()).decode()
    for _, _, content, us in rows:
        event = event_of(bytes(content), from_us(us))
        assert event["type"]["code"] == "rest"  # RESTful operation, typed 'card' for search
        assert {"reference": f"Patient/{pid}"} in [e.get("what") for e in event["entity"]]
        assert query in [e.get("query") for e in event["entity"]]
    assert resident_id() not in dump
    assert "13812345678" not in dump


def test_qr_lifetime_and_grant_period_come_from_settings(
    db_url: str, tmp_path: Path, clock: Clock
) -> None:
    settings = Settings().replace(
        database__url=db_url,
        data__dir=str(tmp_path / "var"),
        card__qr_ttl=5,
        card__checkin_grant_hours=2,
    )
    services = build_services(settings, clock=clock)
    try:
        api = CardApi(create_app(services=services).test_client(), services)
        issued = api.issue(holder())
        res = api.call("POST", f"/cards/{issued['card_no']}/qr", scope="card.read")
        assert res.get_json()["expires_in"] == 5
        token = res.get_json()["qr"]
        clock.advance(5)
        res = api.call("POST", "/check-in", {"qr": token}, scope="card.identify")
        assert problem_type(res) == "qr-expired"
        res = api.call("POST", "/check-in", {"card_no": issued["card_no"]}, scope="card.identify")
        assert res.status_code == 201
        patient = issued["patient"]
        exchange = services.exchange
        assert exchange.active_grants([patient], ORG, clock.now + timedelta(minutes=119))
        assert not exchange.active_grants([patient], ORG, clock.now + timedelta(minutes=120))
    finally:
        services.close()


def test_identify_fast_path_answers_like_the_blueprint(card_api: CardApi) -> None:
    """/identify is answered in front of Flask (card.rest.IdentifyPath); without a body
    length it falls through to the blueprint: both give the same documents."""
    no = card_api.issue(holder())["card_no"]
    token = card_api.token("card.identify")
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = orjson.dumps({"card_no": no})

    def both(data: bytes, headers: dict[str, str]) -> list[tuple[int, str, Any]]:
        sized = card_api.client.post("/card/v1/identify", data=data, headers=headers)
        chunked = card_api.client.post(
            "/card/v1/identify",
            input_stream=io.BytesIO(data),
            headers={**headers, "Transfer-Encoding": "chunked"},
        )
        return [
            (r.status_code, r.headers["Content-Type"], r.headers.get("WWW-Authenticate"))
            for r in (sized, chunked)
        ] + [(0, "", orjson.loads(r.data)) for r in (sized, chunked)]

    ok = both(body, auth)
    assert ok[0] == ok[1] == (200, "application/json", None)
    assert ok[2] == ok[3]
    assert ok[2][2]["card_no"] == no
    unauthorized = both(body, {"Content-Type": "application/json"})
    assert unauthorized[0] == unauthorized[1]
    assert unauthorized[0][:2] == (401, "application/problem+json")
    assert unauthorized[0][2] == 'Bearer realm="hie"'
    assert unauthorized[2] == unauthorized[3]
    assert unauthorized[2][2]["type"].endswith("/unauthorized")
    assert unauthorized[2][2]["instance"] == "/card/v1/identify"
    broken = both(b"{not json", auth)
    assert broken[0] == broken[1]
    assert broken[0][0] == 400
    assert broken[2] == broken[3]
    assert broken[2][2]["type"].endswith("/bad-request")
    res = card_api.client.get("/card/v1/identify", headers=auth)
    assert res.status_code == 405
    assert problem_type(res) == "method-not-allowed"
