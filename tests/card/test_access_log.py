"""GET /card/v1/access-log: a resident, proven by a fresh QR token, sees who accessed them."""

from __future__ import annotations

from hie.app import Services
from tests.card.conftest import CardApi, holder, problem_type
from tests.card.test_readers import _qr


def test_access_log_lists_who_looked_in_plain_language(
    card_api: CardApi, card_services: Services
) -> None:
    issued = card_api.issue(holder())
    pid = issued["patient"].partition("/")[2]
    # Hospital b checks the resident in with the card: a card-presented treatment grant.
    checked_in = card_api.call(
        "POST",
        "/check-in",
        {"card_no": issued["card_no"]},
        scope="card.identify",
        org="Organization/b",
    )
    assert checked_in.status_code == 201, checked_in.get_json()
    token = card_services.issuer.issue(
        subject="his-b",
        scope="system/*.rs",
        ttl=600,
        organization="Organization/b",
        purpose="TREAT",
    )
    assert (
        card_api.client.get(
            f"/fhir/Patient/{pid}", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )
    qr = _qr(card_api, issued["card_no"])
    res = card_api.call("GET", f"/access-log?qr={qr}", scope="card.identify")
    assert res.status_code == 200, res.get_json()
    body = res.get_json()
    assert body["patient"] == issued["patient"]
    read = next(e for e in body["entries"] if e["who"] == "his-b")
    assert read["purposeLabel"] == {"en": "treatment", "zh": "诊疗"}
    assert read["actionLabel"]["zh"] == "查看了一条记录"
    # The token is single use; none at all is a bad request.
    again = card_api.call("GET", f"/access-log?qr={qr}", scope="card.identify")
    assert problem_type(again) == "qr-reused"
    assert card_api.call("GET", "/access-log", scope="card.identify").status_code == 400
