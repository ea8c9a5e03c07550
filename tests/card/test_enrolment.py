"""Enrolling imported card holders in the master patient index in bulk (`hie card import
--enroll`, `hie card enroll`): every holder gets a card-source and an enterprise Patient
without their card being used, with the decisions one create at a time would make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from card import card_number
from hie.app import Services, build_services, create_app
from hie.cli import main
from hie.context import RequestContext, Scopes
from hie.fhir.identifiers import CARD_SYSTEM, RESIDENT_ID_SYSTEM
from hie.settings import Settings
from tests.card.conftest import resident_id

HEADER = "card_no,resident_id,name,gender,birth_date,phone,address,status,issued_at"


def _env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "HIE_DATABASE_URL": db_url,
        "HIE_DATA_DIR": str(tmp_path / "var"),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[2] / "config"),
    }


def _row(serial: int, seq: int, status: str = "active", name: str = "张伟") -> str:
    return ",".join(
        [
            card_number.make(serial),
            resident_id(seq=seq),
            name,
            "男" if seq % 2 else "女",
            "1980-01-01",
            f"139{seq:08d}",
            "四川省绵阳市涪城区临园路1号",
            status,
            "2015-03-01 09:30:00",
        ]
    )


def _csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "cards.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _services(db_url: str, tmp_path: Path) -> Services:
    return build_services(Settings().replace(database__url=db_url, data__dir=str(tmp_path / "var")))


def _enterprise(services: Services, system: str, value: str) -> str | None:
    ops = services.exchange.identity
    assert ops is not None
    ctx = RequestContext(actor="t", scopes=Scopes("hie.identity.manage"))
    return ops.enterprise_by_identifier(ctx, system, value)


def _identify(services: Services, card_no: str) -> dict[str, Any]:
    token = services.issuer.issue(
        subject="r", scope="card.identify", ttl=60, organization="Organization/x"
    )
    res = (
        create_app(services=services)
        .test_client()
        .post(
            "/card/v1/identify",
            json={"card_no": card_no},
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    assert res.status_code == 200, res.get_json()
    out: dict[str, Any] = res.get_json()
    return out


def _patients(services: Services) -> list[dict[str, Any]]:
    ctx = RequestContext.system()
    with services.store.unit_of_work(write=False) as uow:
        rows = uow.scan("Patient", None, 1000)
    bodies = [services.exchange.reveal(ctx, stored) for _, stored in rows]
    return [orjson.loads(b.content) for b in bodies]


def test_import_enrolls_every_holder_at_once(db_url: str, tmp_path: Path) -> None:
    # 101 holds a replaced card and its replacement; 102 and 103 share name and birth date
    rows = [
        _row(1, 101, status="replaced"),
        _row(2, 101),
        _row(3, 102),
        _row(4, 103),
        _row(5, 104, status="cancelled", name="王芳"),
    ]
    data = _csv(tmp_path, rows)
    env = _env(db_url, tmp_path)
    result = CliRunner().invoke(main, ["card", "import", str(data), "--enroll"], env=env)
    assert result.exit_code == 0, result.output
    assert "4 card holders enrolled" in result.output

    services = _services(db_url, tmp_path)
    try:
        enterprises = {
            seq: _enterprise(services, RESIDENT_ID_SYSTEM, resident_id(seq=seq))
            for seq in (101, 102, 103, 104)
        }
        # one enterprise Patient each: the same name and birth date never join two numbers
        assert None not in enterprises.values()
        assert len(set(enterprises.values())) == 4
        # the source Patient names the live card; the old number no longer finds anyone
        assert _enterprise(services, CARD_SYSTEM, card_number.make(2)) == enterprises[101]
        assert _enterprise(services, CARD_SYSTEM, card_number.make(1)) is None
        patients = _patients(services)
        golden = [p for p in patients if any(t["code"] == "enterprise" for t in p["meta"]["tag"])]
        assert len(golden) == 4
        assert len(patients) == 8
        first = next(p for p in golden if f"Patient/{p['id']}" == enterprises[102])
        assert first["name"][0]["text"] == "张伟"
        assert first["birthDate"] == "1980-01-01"
        assert [x["type"] for x in first["link"]] == ["seealso"]
        # identify answers the enrolled enterprise Patient and writes nothing new
        assert _identify(services, card_number.make(4))["patient"] == enterprises[103]
        assert len(_patients(services)) == 8
    finally:
        services.close()

    again = CliRunner().invoke(main, ["card", "import", str(data), "--enroll"], env=env)
    assert "0 card holders enrolled" in again.output, again.output


def test_enroll_later_joins_existing_records_and_first_use(db_url: str, tmp_path: Path) -> None:
    data = _csv(tmp_path, [_row(1, 201), _row(2, 202, name="李娜"), _row(3, 203), _row(4, 204)])
    env = _env(db_url, tmp_path)
    result = CliRunner().invoke(main, ["card", "import", str(data)], env=env)
    assert result.exit_code == 0, result.output
    assert "hie card enroll" in result.output

    services = _services(db_url, tmp_path)
    try:
        assert _enterprise(services, RESIDENT_ID_SYSTEM, resident_id(seq=201)) is None
        hospital = RequestContext(
            actor="his", organization="Organization/h1", scopes=Scopes("system/*.cruds")
        )
        # a hospital knew 201 by resident ID, and 202 without one (same demographics)
        by_number = services.exchange.create(
            hospital,
            "Patient",
            {
                "resourceType": "Patient",
                "identifier": [
                    {"system": "urn:hie:mrn:h1", "value": "A1"},
                    {"system": RESIDENT_ID_SYSTEM, "value": resident_id(seq=201)},
                ],
                "name": [{"family": "张", "given": ["伟"]}],
                "gender": "male",
                "birthDate": "1980-01-01",
            },
        ).stored.id
        unnumbered = services.exchange.create(
            hospital,
            "Patient",
            {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:hie:mrn:h1", "value": "A2"}],
                "name": [{"family": "李", "given": ["娜"]}],
                "gender": "female",
                "birthDate": "1980-01-01",
                "telecom": [{"system": "phone", "value": "13900000202"}],
                "address": [{"line": ["四川省绵阳市涪城区临园路1号"]}],
            },
        ).stored.id
        # 203's card is used before enrolment: its Patient is written at that first use
        first_use = _identify(services, card_number.make(3))["patient"]
    finally:
        services.close()

    result = CliRunner().invoke(main, ["card", "enroll"], env=env)
    assert result.exit_code == 0, result.output
    assert "3 card holders enrolled" in result.output

    services = _services(db_url, tmp_path)
    try:
        ops = services.exchange.identity
        assert ops is not None
        ctx = RequestContext(actor="t", scopes=Scopes("hie.identity.manage"))
        assert _enterprise(services, RESIDENT_ID_SYSTEM, resident_id(seq=201)) == (
            ops.enterprise_of(ctx, by_number)
        )
        assert _enterprise(services, RESIDENT_ID_SYSTEM, resident_id(seq=202)) == (
            ops.enterprise_of(ctx, unnumbered)
        )
        assert _enterprise(services, RESIDENT_ID_SYSTEM, resident_id(seq=203)) == first_use
        assert _identify(services, card_number.make(3))["patient"] == first_use
        # card data win survivorship: the enterprise Patient of 201 shows the card's phone
        ref = _identify(services, card_number.make(1))["patient"]
        golden = services.exchange.read(RequestContext.system(), "Patient", ref.split("/")[1])
        body = orjson.loads(golden.content)
        assert body["telecom"][0]["value"].endswith("0201")
        assert len(body["link"]) == 2
    finally:
        services.close()
