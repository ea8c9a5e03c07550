"""IHE PIXm and PDQm $match over the master patient index; survivorship; the review CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from card.resident_id import check_character
from hie.app import Services
from hie.cli import main
from hie.context import RequestContext
from hie.fhir.identifiers import (
    CARD_SYSTEM,
    ENTERPRISE_SYSTEM,
    IDENTITY_TAG_SYSTEM,
    RESIDENT_ID_SYSTEM,
)
from hie.settings import Settings
from tests.support import Api

RID = "51070319800101123" + check_character("51070319800101123")
CARD = "5107100000000123"
SYS = RequestContext.system()


def patient(mrn: str | None, org: str = "h1", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": f"urn:hie:mrn:{org}", "value": mrn}] if mrn else [],
        "name": [{"family": kw.get("family", "张"), "given": [kw.get("given", "伟")]}],
        "gender": "male",
        "birthDate": "1980-01-01",
        "address": [{"line": [kw.get("line", "临园路12号")], "district": "涪城区"}],
    }
    if kw.get("rid"):
        body["identifier"].append({"system": RESIDENT_ID_SYSTEM, "value": kw["rid"]})
    if not body["identifier"]:
        del body["identifier"]
    if kw.get("phone", "13812345678"):
        body["telecom"] = [{"system": "phone", "value": kw.get("phone", "13812345678")}]
    return body


def create(api: Api, body: dict[str, Any]) -> str:
    res = api.post("Patient", body)
    assert res.status_code == 201, res.json
    return str(res.json["id"])


def card_holder() -> dict[str, Any]:
    body = patient(None, rid=RID, line="剑南路3号")
    body["identifier"].append({"system": CARD_SYSTEM, "value": CARD})
    body["meta"] = {"tag": [{"system": IDENTITY_TAG_SYSTEM, "code": "card"}]}
    return body


def test_pixm_returns_every_identifier_of_the_person(api: Api, services: Services) -> None:
    card = create(api, card_holder())
    a = create(api, patient("A1", "h1", rid=RID))
    b = create(api, patient("B7", "h2", rid=RID, line="临园路99号"))
    enterprise = services.exchange.enterprise_of(SYS, f"Patient/{a}")
    res = api.get("Patient/$ihe-pix?sourceIdentifier=urn:hie:mrn:h1|A1")
    assert res.status_code == 200, res.json
    idents = {
        (p["valueIdentifier"]["system"], p["valueIdentifier"]["value"])
        for p in res.json["parameter"]
        if p["name"] == "targetIdentifier"
    }
    masked = RID[:6] + "********" + RID[-4:]
    assert idents == {
        (ENTERPRISE_SYSTEM, enterprise.split("/")[1]),
        ("urn:hie:mrn:h2", "B7"),
        (RESIDENT_ID_SYSTEM, masked),
        (CARD_SYSTEM, CARD),
    }
    refs = {
        p["valueReference"]["reference"] for p in res.json["parameter"] if p["name"] == "targetId"
    }
    assert refs == {enterprise, f"Patient/{a}", f"Patient/{b}", f"Patient/{card}"}
    only = api.get(
        "Patient/$ihe-pix?sourceIdentifier=urn:hie:mrn:h1|A1&targetSystem=urn:hie:mrn:h2"
    ).json
    assert [
        p["valueIdentifier"]["value"] for p in only["parameter"] if p["name"] == "targetIdentifier"
    ] == ["B7"]
    assert [
        p["valueReference"]["reference"] for p in only["parameter"] if p["name"] == "targetId"
    ] == [f"Patient/{b}"]
    by_card = api.get(f"Patient/$ihe-pix?sourceIdentifier={CARD_SYSTEM}|{CARD}").json
    assert any(p.get("valueIdentifier", {}).get("value") == "A1" for p in by_card["parameter"])
    assert api.get("Patient/$ihe-pix?sourceIdentifier=urn:hie:mrn:h1|nobody").status_code == 404
    assert api.get("Patient/$ihe-pix?sourceIdentifier=nonsense").status_code == 400
    # survivorship: the card's address wins over the more recent hospital record
    golden = api.get(enterprise).json
    assert golden["address"][0]["line"] == ["剑南路3号"]


def match_query(**kw: Any) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "resource", "resource": patient(None, **kw)}]
    for name in ("onlyCertainMatches", "count"):
        if name in kw:
            key = "valueBoolean" if name == "onlyCertainMatches" else "valueInteger"
            params.append({"name": name, key: kw[name]})
    return {"resourceType": "Parameters", "parameter": params}


def test_pdqm_match_scores_and_grades_candidates(api: Api, services: Services) -> None:
    a = create(api, patient("A1", rid=RID))
    other = create(api, patient("Z9", "h2", family="张", given="卫", phone="13900000000"))
    ea = services.exchange.enterprise_of(SYS, f"Patient/{a}")
    eo = services.exchange.enterprise_of(SYS, f"Patient/{other}")
    res = api.post("Patient/$match", match_query())
    assert res.status_code == 200, res.json
    entries = res.json["entry"]
    assert entries[0]["fullUrl"].endswith(ea)
    assert entries[0]["search"]["mode"] == "match"
    assert entries[0]["search"]["score"] == 1.0
    assert entries[0]["search"]["extension"][0] == {
        "url": "http://hl7.org/fhir/StructureDefinition/match-grade",
        "valueCode": "certain",
    }
    assert re.fullmatch(r"1[0-9]{2}\*{4}[0-9]{4}", entries[0]["resource"]["telecom"][0]["value"])
    scores = [e["search"]["score"] for e in entries]
    assert scores == sorted(scores, reverse=True)
    # a pinyin-only query is never certain
    pinyin = api.post("Patient/$match", match_query(family="Zhang", given="Wei", phone=None)).json
    assert pinyin["entry"]
    assert all(
        e["search"]["extension"][0]["valueCode"] in ("probable", "possible")
        for e in pinyin["entry"]
    )
    certain_only = match_query(family="Zhang", given="Wei", phone=None, onlyCertainMatches=True)
    assert api.post("Patient/$match", certain_only).json["total"] == 0
    assert api.post("Patient/$match", match_query(onlyCertainMatches=True)).json["total"] == 1
    one = api.post("Patient/$match", match_query(given="卫", phone=None, count=1)).json
    assert len(one["entry"]) == 1
    assert {e["fullUrl"].rsplit("/", 1)[1] for e in entries} <= {ea.split("/")[1], eo.split("/")[1]}
    bad = api.post("Patient/$match", {"resourceType": "Parameters", "parameter": []})
    assert bad.status_code == 400


def test_review_cli_works_the_queue(api: Api, services: Services, settings: Settings) -> None:
    a = create(api, patient("A1"))
    pinyin = create(api, patient("C1", "h3", family="Zhang", given="Wei", phone=None))
    enterprise = services.exchange.enterprise_of(SYS, f"Patient/{a}")
    assert services.exchange.enterprise_of(SYS, f"Patient/{pinyin}") == enterprise
    env = {
        "HIE_DATABASE_URL": settings.database.url,
        "HIE_DATA_DIR": str(settings.data_dir),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[3] / "config"),
    }
    listed = CliRunner().invoke(main, ["identity", "review", "--list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"Patient/{pinyin}" in listed.output
    assert "138****5678" in listed.output
    rejected = CliRunner().invoke(main, ["identity", "review"], input="r\n", env=env)
    assert rejected.exit_code == 0, rejected.output
    own = services.exchange.enterprise_of(SYS, f"Patient/{pinyin}")
    assert own != enterprise
    # the hospital resends the record: the person's decision stands
    again = patient("C1", "h3", family="Zhang", given="Wei", phone=None) | {"id": pinyin}
    assert api.request("PUT", f"Patient/{pinyin}", again | {"gender": "male"}).status_code == 200
    assert services.exchange.enterprise_of(SYS, f"Patient/{pinyin}") == own
    empty = CliRunner().invoke(main, ["identity", "review", "--list"], env=env)
    assert "no open reviews" in empty.output
