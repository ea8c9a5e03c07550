"""`hie card rewrap` after a key rotation: holders' secrets move to the new keys and
lookups keep working before, during and after."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from hie.app import build_services, create_app
from hie.cli import main
from hie.crypto import load_keyring
from hie.settings import Settings
from tests.card.conftest import CardApi, holder, resident_id


def test_rewrap_after_rotation(card_api: CardApi, db_url: str, tmp_path: Path) -> None:
    numbers = [card_api.issue(holder(seq=seq))["card_no"] for seq in (123, 124, 125)]
    data_dir = tmp_path / "var"
    ring = load_keyring(data_dir).rotated(index=True)
    ring.save()
    env = {
        "HIE_DATABASE_URL": db_url,
        "HIE_DATA_DIR": str(data_dir),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[2] / "config"),
    }
    settings = Settings().replace(database__url=db_url, data__dir=str(data_dir))
    rotated = build_services(settings)
    try:
        client = create_app(services=rotated).test_client()
        token = rotated.issuer.issue(subject="p", scope="card.identity", ttl=60, organization="O")
        auth = {"Authorization": f"Bearer {token}"}
        ask = {"resident_id": resident_id(seq=124), "name": "张伟"}
        # old index values are still found by the rotated keyring (every key is tried)
        assert client.post("/card/v1/identity/verify", json=ask, headers=auth).get_json() == {
            "match": True
        }
        result = CliRunner().invoke(main, ["card", "rewrap", "--batch", "2"], env=env)
        assert result.exit_code == 0, result.output
        assert "3 of 3 card holders re-encrypted" in result.output
        again = CliRunner().invoke(main, ["card", "rewrap"], env=env)
        assert "0 of 3" in again.output
        with rotated.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT resident_id_enc, resident_id_idx, phone_enc FROM card_person")
            ).all()
        for enc, idx, phone in rows:
            assert enc.split(".")[1] == ring.encryption.current
            assert phone.split(".")[1] == ring.encryption.current
            assert idx.split(".")[0] == ring.index.current
        assert client.post("/card/v1/identity/verify", json=ask, headers=auth).get_json() == {
            "match": True
        }
        reader = rotated.issuer.issue(subject="r", scope="card.identify", ttl=60, organization="O")
        res = client.post(
            "/card/v1/identify",
            json={"card_no": numbers[0]},
            headers={"Authorization": f"Bearer {reader}"},
        )
        assert res.get_json()["holder"]["resident_id"].endswith(resident_id(seq=123)[-4:])
    finally:
        rotated.close()


def test_keys_rotate_reseals_card_holders(card_api: CardApi, db_url: str, tmp_path: Path) -> None:
    for seq in (123, 124):
        card_api.issue(holder(seq=seq))
    data_dir = tmp_path / "var"
    env = {
        "HIE_DATABASE_URL": db_url,
        "HIE_DATA_DIR": str(data_dir),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[2] / "config"),
    }
    result = CliRunner().invoke(main, ["keys", "rotate", "--index"], env=env)
    assert result.exit_code == 0, result.output
    assert "2 card holders" in result.output
    ring = load_keyring(data_dir)
    with card_api.services.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT resident_id_enc, resident_id_idx FROM card_person"))
        for enc, idx in rows:
            assert enc.split(".")[1] == ring.encryption.current
            assert idx.split(".")[0] == ring.index.current
