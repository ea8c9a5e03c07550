"""Spent QR token ids are pruned once expired (they can never be replayed then), on a
cheap cadence; a replay is refused before and after the pruning (SQLite and PG)."""

from __future__ import annotations

import sqlalchemy as sa

from hie.app import Services
from tests.card.conftest import CardApi, Clock, holder, problem_type
from tests.card.test_readers import _qr


def _spent(services: Services) -> set[str]:
    with services.engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.text("SELECT jti FROM card_qr_use"))}


def _identify(card_api: CardApi, token: str) -> str:
    res = card_api.call("POST", "/identify", {"qr": token}, scope="card.identify")
    return "ok" if res.status_code == 200 else problem_type(res)


def test_expired_spent_tokens_are_pruned(
    card_api: CardApi, card_services: Services, clock: Clock
) -> None:
    no = card_api.issue(holder())["card_no"]
    old = [_qr(card_api, no) for _ in range(3)]
    assert [_identify(card_api, t) for t in old] == ["ok", "ok", "ok"]
    assert len(_spent(card_services)) == 3
    # Within the prune interval nothing is deleted, and a replay is a reuse.
    clock.advance(30)
    assert _identify(card_api, old[0]) == "qr-reused"
    assert len(_spent(card_services)) == 3
    # Long after they expired (60 s) plus the grace (60 s), the next use prunes them.
    clock.advance(100)
    fresh = _qr(card_api, no)
    assert _identify(card_api, fresh) == "ok"
    assert len(_spent(card_services)) == 1
    # The pruned tokens are still refused (expired), and so is the fresh one's replay.
    assert [_identify(card_api, t) for t in old] == ["qr-expired"] * 3
    assert _identify(card_api, fresh) == "qr-reused"
    # A token not yet used but expired is refused and not recorded.
    late = _qr(card_api, no)
    clock.advance(61)
    assert _identify(card_api, late) == "qr-expired"
    assert len(_spent(card_services)) == 1
