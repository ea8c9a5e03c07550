"""The identity backbone for the city's other platforms: verify and resolve."""

from __future__ import annotations

import sqlalchemy as sa

from tests.card.conftest import ORG, OTHER_ORG, CardApi, holder, problem_type, resident_id


def test_verify_answers_match_or_not_and_nothing_else(card_api: CardApi) -> None:
    card_api.issue(holder())
    ask = {"resident_id": resident_id(), "name": "张伟"}
    res = card_api.call("POST", "/identity/verify", ask, scope="card.identity")
    assert res.status_code == 200
    assert res.get_json() == {"match": True}
    ask["name"] = "张玮"
    assert card_api.call("POST", "/identity/verify", ask, scope="card.identity").get_json() == {
        "match": False
    }
    unknown = {"resident_id": resident_id(seq=125), "name": "张伟"}
    assert card_api.call("POST", "/identity/verify", unknown, scope="card.identity").get_json() == {
        "match": False
    }
    res = card_api.call("POST", "/identity/verify", ask, scope="card.identify")
    assert problem_type(res) == "insufficient-scope"
    res = card_api.call("POST", "/identity/verify", {"resident_id": "1"}, scope="card.identity")
    assert problem_type(res) == "bad-request"
    bad = {"resident_id": "51070319801301123X", "name": "张伟"}
    res = card_api.call("POST", "/identity/verify", bad, scope="card.identity")
    assert problem_type(res) == "invalid-resident-id"
    assert "19801301 is not a date" in res.get_json()["detail"]


def test_resolve_gives_stable_per_platform_pseudonyms(card_api: CardApi) -> None:
    no = card_api.issue(holder())["card_no"]

    def resolve(query: str, org: str | None = ORG) -> dict[str, str]:
        res = card_api.call("GET", f"/identity/resolve?{query}", scope="card.identity", org=org)
        assert res.status_code == 200, res.get_json()
        body: dict[str, str] = res.get_json()
        return body

    by_card = resolve(f"card_no={no}")
    assert by_card == resolve(f"resident_id={resident_id()}")
    assert by_card["organization"] == ORG
    other = resolve(f"card_no={no}", OTHER_ORG)["pseudonym"]
    assert other != by_card["pseudonym"]
    assert resident_id() not in by_card["pseudonym"]
    # a replacement card keeps the pseudonym; the old number resolves nobody
    res = card_api.call("POST", f"/cards/{no}/replace", None, scope="card.manage")
    new = res.get_json()["new_card"]["card_no"]
    assert resolve(f"card_no={new}") == by_card
    res = card_api.call("GET", f"/identity/resolve?card_no={no}", scope="card.identity")
    assert problem_type(res) == "card-replaced"
    # refusals
    res = card_api.call("GET", "/identity/resolve", scope="card.identity")
    assert problem_type(res) == "bad-request"
    res = card_api.call(
        "GET", f"/identity/resolve?resident_id={resident_id(seq=125)}", scope="card.identity"
    )
    assert problem_type(res) == "person-not-found"
    res = card_api.call("GET", f"/identity/resolve?card_no={new}", scope="card.identity", org=None)
    assert problem_type(res) == "no-organization"


def test_resolve_and_verify_refused_after_cancellation(card_api: CardApi) -> None:
    no = card_api.issue(holder())["card_no"]
    card_api.call("POST", f"/cards/{no}/cancel", {"reason": "death"}, scope="card.manage")
    for query in (f"card_no={no}", f"resident_id={resident_id()}"):
        res = card_api.call("GET", f"/identity/resolve?{query}", scope="card.identity")
        assert res.status_code == 403
        assert problem_type(res) == "person-cancelled"
    ask = {"resident_id": resident_id(), "name": "张伟"}
    assert card_api.call("POST", "/identity/verify", ask, scope="card.identity").get_json() == {
        "match": False
    }


def test_card_tables_hold_no_plain_identifiers(card_api: CardApi) -> None:
    """The raw rows of every card table (SQLite file or PostgreSQL) show no ID or phone."""
    for seq in (123, 124, 125):
        card_api.issue(holder(seq=seq, phone=f"1381234{seq:04d}"))
    with card_api.services.engine.connect() as conn:
        dump = " ".join(
            str(row)
            for table in ("card_person", "card", "card_event", "card_qr_use", "consent_grant")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")).all()
        )
    assert "hie1." in dump  # the sealed values are there
    for seq in (123, 124, 125):
        assert resident_id(seq=seq) not in dump
        assert resident_id(seq=seq)[:17] not in dump
        assert f"1381234{seq:04d}" not in dump
