"""`hie card import`: CSV migration of existing cards, idempotent, with a report of rejects."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner

from card import card_number
from hie.app import build_services, create_app
from hie.cli import main
from hie.settings import Settings
from tests.card.conftest import resident_id

HEADER = "card_no,resident_id,name,gender,birth_date,phone,address,status,issued_at"


def _env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "HIE_DATABASE_URL": db_url,
        "HIE_DATA_DIR": str(tmp_path / "var"),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[2] / "config"),
    }


def _row(serial: int, seq: int, status: str = "active", **over: str) -> str:
    values = {
        "card_no": card_number.make(serial),
        "resident_id": resident_id(seq=seq),
        "name": "王芳" if seq % 2 == 0 else "张伟",
        "gender": "女" if seq % 2 == 0 else "男",
        "birth_date": "1980-01-01",
        "phone": f"139{seq:08d}",
        "address": "绵阳市游仙区",
        "status": status,
        "issued_at": "2015-03-01 09:30:00",
    }
    values.update(over)
    return ",".join(values.values())


def test_import_is_idempotent_and_reports_rejects(db_url: str, tmp_path: Path) -> None:
    rows = [
        _row(1, 101),
        _row(2, 102),
        _row(3, 103, status="replaced"),
        _row(4, 103),  # the same resident's replacement card: fine
        _row(5, 104, status="cancelled"),
        _row(6, 105, status="lost"),
        _row(7, 101),  # a second live card for resident 101
        _row(8, 106, birth_date="1980-02-01"),  # disagrees with the ID
        _row(9, 107, card_no="5107100000000099"),  # bad check digit
        _row(10, 108, status="expired"),
        _row(11, 109, resident_id="510703198001011090"),  # bad ID check character
        _row(12, 110, issued_at="yesterday"),
        _row(1, 111),  # card number repeated in the file for someone else
    ]
    data = tmp_path / "cards.csv"
    data.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    env = _env(db_url, tmp_path)
    result = CliRunner().invoke(main, ["card", "import", str(data), "--batch", "4"], env=env)
    assert result.exit_code == 1, result.output
    assert "imported 6" in result.output
    assert "rejected 7" in result.output
    report = tmp_path / "cards.csv.rejected.csv"
    with report.open(encoding="utf-8") as fh:
        rejects = list(csv.DictReader(fh))
    reasons = {int(r["line"]): r["reason"] for r in rejects}
    assert set(reasons) == {8, 9, 10, 11, 12, 13, 14}
    assert "already holds card" in reasons[8]
    assert "birth date 1980-02-01" in reasons[9]
    assert "check digit should be" in reasons[10]
    assert "status 'expired'" in reasons[11]
    assert "check digit should be" in reasons[12]
    assert "issued_at" in reasons[13]
    assert "another resident" in reasons[14]

    again = CliRunner().invoke(main, ["card", "import", str(data)], env=env)
    assert "imported 0, already present 6" in again.output, again.output
    assert "rejected 7" in again.output

    # imported cards work at once: the Patient is written on first use
    settings = Settings().replace(database__url=db_url, data__dir=str(tmp_path / "var"))
    services = build_services(settings)
    try:
        token = services.issuer.issue(
            subject="r", scope="card.identify card.read", ttl=60, organization="Organization/x"
        )
        client = create_app(services=services).test_client()
        auth = {"Authorization": f"Bearer {token}"}
        res = client.post("/card/v1/identify", json={"card_no": card_number.make(4)}, headers=auth)
        assert res.status_code == 200, res.get_json()
        assert res.get_json()["patient"].startswith("Patient/")
        res = client.post("/card/v1/identify", json={"card_no": card_number.make(3)}, headers=auth)
        assert res.get_json()["type"].endswith("/card-replaced")
        res = client.post("/card/v1/identify", json={"card_no": card_number.make(6)}, headers=auth)
        assert res.get_json()["type"].endswith("/card-lost")
        history = client.get(f"/card/v1/cards/{card_number.make(1)}", headers=auth).get_json()
        assert history["issued_at"] == "2015-03-01T01:30:00Z"
        assert [e["action"] for e in history["history"]] == ["import"]
    finally:
        services.close()
