"""Protected numbers: never in plain text in the database, searchable, masked, rotatable."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from card.resident_id import check_character
from hie.app import Services, build_services, create_app
from hie.cli import main
from hie.crypto import load_keyring
from hie.fhir.identifiers import RESIDENT_ID_SYSTEM
from hie.schema import all_tables
from hie.settings import Settings
from tests.support import Api

RID = "51070319800101123" + check_character("51070319800101123")
LEGACY = "510703800101123"  # the same person's 15-digit number (upgrades to RID)
PHONE = "13812345678"
NEEDLES = [RID, RID[:17], LEGACY, PHONE, "138-1234-5678", "138 1234 5678"]


def person(mrn: str, *, rid: str = RID, phone: str = "+86 138-1234-5678") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:hie:mrn:h1", "value": mrn},
            {"system": RESIDENT_ID_SYSTEM, "value": rid},
        ],
        "name": [{"family": "张", "given": ["伟"]}],
        "gender": "male",
        "birthDate": "1980-01-01",
        "telecom": [{"system": "phone", "value": phone}, {"system": "email", "value": "z@x.cn"}],
        "contact": [{"telecom": [{"system": "phone", "value": PHONE}]}],
    }


def exercise(services: Services) -> None:
    """Every way a number reaches the exchange: writes, searches, operations."""
    app = create_app(services=services)
    token = services.issuer.issue(subject="t", scope="system/*.cruds", ttl=600)
    api = Api(app.test_client(), token)
    first = api.post("Patient", person("A1"))
    assert first.status_code == 201
    pid = first.json["id"]
    assert api.post("Patient", person("A2", rid=LEGACY)).status_code == 201
    put = api.request(
        "PUT",
        f"Patient?identifier={RESIDENT_ID_SYSTEM}|{RID}&identifier=urn:hie:mrn:h1|A1",
        person("A1", phone=PHONE),
    )
    assert put.status_code == 200, put.json
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": person("A3"), "request": {"method": "POST", "url": "Patient"}}],
    }
    assert api.post("", bundle).status_code == 200
    for query in (
        f"identifier={RESIDENT_ID_SYSTEM}|{RID}",
        f"telecom={PHONE}",
        "phone=138-1234-5678",
        f"identifier={RESIDENT_ID_SYSTEM}|{LEGACY}",
        f"identifier={RID}",  # no system: the resident ID is one of the candidates
        f"identifier={RID.lower()},urn:nothing|0",
    ):
        found = api.get(f"Patient?{query}").json
        assert found["total"] >= 3, (query, found)
    assert api.get(f"Patient/{pid}/_history").status_code == 200
    pix = api.get(f"Patient/$ihe-pix?sourceIdentifier={RESIDENT_ID_SYSTEM}|{RID}")
    assert pix.status_code == 200, pix.json
    match = api.post(
        "Patient/$match",
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": person("Q")}],
        },
    )
    assert match.status_code == 200, match.json


def test_numbers_are_masked_unless_the_scope_allows_them(api: Api, services: Services) -> None:
    pid = api.post("Patient", person("A1")).json["id"]
    shown = api.get(f"Patient/{pid}").json
    rid = next(i for i in shown["identifier"] if i["system"] == RESIDENT_ID_SYSTEM)
    assert rid == {"system": RESIDENT_ID_SYSTEM, "value": "510703********" + RID[-4:]}
    assert shown["telecom"][0] == {"system": "phone", "value": "138****5678"}
    assert shown["telecom"][1]["value"] == "z@x.cn"
    full = services.issuer.issue(subject="u", scope="system/*.cruds hie.identity.unmasked", ttl=600)
    body = api.get(f"Patient/{pid}", token=full).json
    assert {i["value"] for i in body["identifier"]} == {"A1", RID}
    assert body["telecom"][0]["value"] == PHONE
    assert body["contact"][0]["telecom"][0]["value"] == PHONE
    # a masked number sent back is refused rather than stored
    shown["id"] = pid
    again = api.request("PUT", f"Patient/{pid}", shown)
    assert again.status_code == 400
    assert "masked" in again.json["issue"][0]["diagnostics"]
    # what an unmasked reader sends back is the same resource: no new version
    same = api.request("PUT", f"Patient/{pid}", body, token=full)
    assert same.status_code == 200
    assert same.json["meta"]["versionId"] == "1"


def test_bare_identifier_searches_find_resident_ids_and_other_systems(api: Api) -> None:
    holder = api.post("Patient", person("A1")).json["id"]
    # another hospital whose MRNs happen to look like resident ID numbers
    other = {"resourceType": "Patient", "identifier": [{"system": "urn:hie:mrn:h2", "value": RID}]}
    lookalike = api.post("Patient", other).json["id"]

    def ids(query: str) -> set[str]:
        bundle = api.get(f"Patient?{query}").json
        return {e["resource"]["id"] for e in bundle.get("entry", [])}

    assert ids(f"identifier={RID}") == {holder, lookalike}
    assert ids(f"identifier={LEGACY}") == {holder}  # the legacy form names the same number
    assert ids("identifier=A1") == {holder}
    assert ids(f"identifier=|{RID}") == set()  # explicitly no system: no sealed number
    # (the enterprise Patients the index made hold no resident ID here)
    kept = ids(f"identifier:not={RESIDENT_ID_SYSTEM}|{RID}")
    assert lookalike in kept
    assert holder not in kept


def _texts(settings: Settings) -> list[str]:
    """SQLite: the raw database files (free pages included); PostgreSQL: every table."""
    url = settings.database.url
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [path, Path(f"{path}-wal"), Path(f"{path}-journal")]
        return [f.read_bytes().decode("latin-1") for f in files if f.exists()]
    return _rows(url)


def _rows(url: str) -> list[str]:
    """Every value of every table (bytes decoded leniently)."""
    engine = create_engine(url)
    out: list[str] = []
    try:
        with engine.connect() as conn:
            for table in all_tables():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    for value in row:
                        if isinstance(value, (bytes, memoryview)):
                            out.append(bytes(value).decode("latin-1"))
                        elif value is not None:
                            out.append(str(value))
    finally:
        engine.dispose()
    return out


def test_no_resident_id_or_phone_in_plain_text_in_the_database_or_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    services = build_services(settings)
    try:
        exercise(services)
    finally:
        services.close()
    haystack = _texts(settings)
    assert any("urn:hie:sealed" in h for h in haystack), "the raw data were read"
    for needle in NEEDLES:
        assert not any(needle in h for h in haystack), f"{needle} found in the database"
        assert needle not in caplog.text, f"{needle} found in the logs"


def _cli_env(settings: Settings) -> dict[str, str]:
    return {
        "HIE_DATABASE_URL": settings.database.url,
        "HIE_DATA_DIR": str(settings.data_dir),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[3] / "config"),
    }


def test_key_rotation_reencrypts_everything_without_downtime(settings: Settings) -> None:
    running = build_services(settings)  # a server that stays up through the rotation
    try:
        exercise(running)
        old = load_keyring(settings.data_dir)
        result = CliRunner().invoke(main, ["keys", "rotate", "--index"], env=_cli_env(settings))
        assert result.exit_code == 0, result.output
        assert "re-encrypted" in result.output
        new = load_keyring(settings.data_dir)
        assert new.encryption.current != old.encryption.current
        assert set(new.encryption.keys) == {old.encryption.current, new.encryption.current}
        haystack = "".join(_rows(settings.database.url))
        assert f"hie1.{new.encryption.current}." in haystack
        assert not re.search(rf"hie1\.{old.encryption.current}\.", haystack), "all re-encrypted"
        # the running server reads what was re-encrypted under a key it had not loaded
        ctx_token = running.issuer.issue(subject="t", scope="system/*.cruds", ttl=600)
        api = Api(create_app(services=running).test_client(), ctx_token)
        found = api.get(f"Patient?identifier={RESIDENT_ID_SYSTEM}|{RID}").json
        assert found["total"] >= 3
        shown = found["entry"][0]["resource"]["telecom"][0]["value"]
        assert shown == "138****5678"
        again = CliRunner().invoke(main, ["keys", "rewrap"], env=_cli_env(settings))
        assert again.exit_code == 0, again.output
        assert "re-encrypted 0 resource versions" in again.output, "a re-run finds nothing to do"
        retire = CliRunner().invoke(
            main, ["keys", "retire", old.encryption.current], env=_cli_env(settings)
        )
        assert retire.exit_code == 0, retire.output
    finally:
        running.close()
    fresh = build_services(settings)
    try:
        api = Api(
            create_app(services=fresh).test_client(),
            fresh.issuer.issue(subject="t", scope="system/*.cruds", ttl=600),
        )
        assert api.get(f"Patient?telecom={PHONE}").json["total"] >= 3
        pix = api.get(f"Patient/$ihe-pix?sourceIdentifier={RESIDENT_ID_SYSTEM}|{RID}").json
        assert any(p["name"] == "targetId" for p in pix["parameter"])
    finally:
        fresh.close()


def test_sealing_walks_only_resources_that_name_a_protected_system(services: Services) -> None:
    protection = services.exchange.protection
    assert protection is not None
    plain_obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "电话 phone sms"},  # the words alone are not a protected element
        "note": [{"text": '{"system":"phone","value":"13812345678"}'}],
        "valueString": PHONE,
    }
    sealed = protection.seal(plain_obs)
    assert sealed == plain_obs
    assert sealed is not plain_obs
    # A protected element anywhere, however deep, is still sealed.
    org = {
        "resourceType": "Organization",
        "contact": [{"telecom": [{"system": "sms", "value": PHONE}]}],
        "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": RID}],
    }
    out = protection.seal(org)
    assert PHONE not in str(out)
    assert RID not in str(out)
    assert protection.open(out, masked=False) == org
