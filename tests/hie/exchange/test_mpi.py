"""The master patient index in the write path, through the FHIR REST API (SQLite and PG)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from card.resident_id import check_character
from hie.app import Services
from hie.context import RequestContext, Scopes
from hie.errors import Forbidden, NotFound
from hie.fhir.identifiers import RESIDENT_ID_SYSTEM
from tests.support import Api

SYS = RequestContext.system()


def rid(first17: str) -> str:
    return first17 + check_character(first17)


ZHANG = rid("51070319800101123")  # male, born 1980-01-01 in Fucheng
OTHER = rid("51070319800101125")


def patient(
    mrn: str,
    org: str = "h1",
    *,
    resident_id: str | None = None,
    family: str = "张",
    given: str = "伟",
    birth: str = "1980-01-01",
    gender: str = "male",
    phone: str | None = "13812345678",
    line: str = "临园路12号",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": f"urn:hie:mrn:{org}", "value": mrn}],
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth,
        "address": [{"line": [line], "district": "涪城区"}],
    }
    if resident_id:
        body["identifier"].append({"system": RESIDENT_ID_SYSTEM, "value": resident_id})
    if phone:
        body["telecom"] = [{"system": "phone", "value": phone}]
    return body


def create(api: Api, body: dict[str, Any]) -> str:
    res = api.post("Patient", body)
    assert res.status_code == 201, res.json
    return str(res.json["id"])


def enterprise(services: Services, source_id: str) -> str:
    """The enterprise Patient's reference."""
    return services.exchange.enterprise_of(SYS, f"Patient/{source_id}")


def links(api: Api, enterprise_ref: str) -> dict[str, str]:
    body = api.get(enterprise_ref).json
    out = {}
    for link in body.get("link", []):
        status = next((e["valueCode"] for e in link.get("extension", [])), link["type"])
        out[link["other"]["reference"]] = status
    return out


def test_same_resident_id_links_records_of_two_hospitals(api: Api, services: Services) -> None:
    a = create(api, patient("A1", "h1", resident_id=ZHANG))
    b = create(api, patient("B7", "h2", resident_id=ZHANG.lower()[:-1] + ZHANG[-1].lower()))
    e = enterprise(services, a)
    assert e == enterprise(services, b)
    assert e == services.exchange.enterprise_of(SYS, e)  # an enterprise stands for itself
    assert links(api, e) == {f"Patient/{a}": "auto", f"Patient/{b}": "auto"}
    golden = api.get(e).json
    assert golden["meta"]["tag"][0]["code"] == "enterprise"
    assert golden["name"][0]["text"] == "张伟"
    assert golden["birthDate"] == "1980-01-01"
    # lookup by number: the card service's way in
    ops = services.exchange.identity
    assert ops is not None
    assert ops.enterprise_by_identifier(SYS, RESIDENT_ID_SYSTEM, ZHANG) == e


def test_different_valid_resident_ids_are_never_linked(api: Api, services: Services) -> None:
    a = create(api, patient("A1", resident_id=ZHANG))
    b = create(api, patient("B1", "h2", resident_id=OTHER))  # same name, birth, phone, address
    assert enterprise(services, a) != enterprise(services, b)


def test_probabilistic_match_possible_match_and_no_match(api: Api, services: Services) -> None:
    a = create(api, patient("A1"))
    same = create(api, patient("B1", "h2"))  # no resident ID; every field agrees
    assert enterprise(services, same) == enterprise(services, a)
    # pinyin only (a system without Chinese input): at most a possible match
    pinyin = create(api, patient("C1", "h3", family="Zhang", given="Wei", phone=None))
    e = enterprise(services, a)
    assert enterprise(services, pinyin) == e
    assert links(api, e)[f"Patient/{pinyin}"] == "provisional"
    ops = services.exchange.identity
    assert ops is not None
    queue = ops.reviews(SYS)
    assert [(r.source_id, f"Patient/{r.enterprise_id}") for r in queue] == [(pinyin, e)]
    stranger = create(
        api,
        patient(
            "D1",
            "h4",
            family="李",
            given="娜",
            birth="1992-05-06",
            gender="female",
            phone="13900001111",
            line="长虹大道1号",
        ),
    )
    assert enterprise(services, stranger) not in (e,)


def test_a_changed_record_is_matched_again(api: Api, services: Services) -> None:
    a = create(api, patient("A1"))
    b = create(
        api,
        patient(
            "B1",
            "h2",
            family="李",
            given="娜",
            birth="1992-05-06",
            gender="female",
            phone="13900001111",
            line="长虹大道1号",
        ),
    )
    assert enterprise(services, a) != enterprise(services, b)
    old_b = enterprise(services, b)
    # the hospital corrects the record: it is the same person as A after all
    fixed = patient("B1", "h2") | {"id": b}
    assert api.request("PUT", f"Patient/{b}", fixed).status_code == 200
    assert enterprise(services, b) == enterprise(services, a)
    # the enterprise Patient B left behind has no members and is inactive
    assert api.get(old_b).json["active"] is False


def test_human_decisions_are_never_overwritten(api: Api, services: Services) -> None:
    a = create(api, patient("A1", resident_id=ZHANG))
    b = create(api, patient("B1", "h2", resident_id=ZHANG))
    e = enterprise(services, a)
    res = api.post(
        "Patient/$unlink",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "source-patient", "valueReference": {"reference": f"Patient/{b}"}}
            ],
        },
    )
    assert res.status_code == 200, res.json
    own = res.json["parameter"][0]["valueReference"]["reference"]
    assert own != e
    assert enterprise(services, b) == own
    # the hospital resends B: the matcher would link it to A, but a person said no
    again = patient("B1", "h2", resident_id=ZHANG, line="临园路14号") | {"id": b}
    assert api.request("PUT", f"Patient/{b}", again).status_code == 200
    assert enterprise(services, b) == own
    assert links(api, own)[f"Patient/{b}"] == "manual"
    # and a manual link back
    res = api.post(
        "Patient/$link",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "source-patient", "valueReference": {"reference": f"Patient/{b}"}},
                {"name": "target-patient", "valueReference": {"reference": e}},
            ],
        },
    )
    assert res.status_code == 200, res.json
    assert enterprise(services, b) == e


def test_merge_and_unmerge_enterprise_patients(api: Api, services: Services) -> None:
    a = create(api, patient("A1"))
    b = create(
        api,
        patient(
            "B1",
            "h2",
            family="李",
            given="娜",
            birth="1992-05-06",
            gender="female",
            phone="13900001111",
            line="长虹大道1号",
        ),
    )
    ea, eb = enterprise(services, a), enterprise(services, b)

    def op(name: str, *params: tuple[str, str]) -> Any:
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": n, "valueReference": {"reference": v}} for n, v in params],
        }
        res = api.post(f"Patient/${name}", body)
        assert res.status_code == 200, res.json
        return res.json

    op("merge", ("source-patient", eb), ("target-patient", ea))
    assert enterprise(services, b) == ea
    assert services.exchange.enterprise_of(SYS, eb) == ea
    retired = api.get(eb).json
    assert retired["active"] is False
    assert retired["link"][0]["type"] == "replaced-by"
    assert {"other": {"reference": eb}, "type": "replaces"} in api.get(ea).json["link"]
    op("unmerge", ("source-patient", eb))
    assert enterprise(services, b) == eb
    assert enterprise(services, a) == ea
    assert api.get(eb).json["active"] is True


def test_everything_on_an_enterprise_patient_includes_linked_records(
    api: Api, services: Services
) -> None:
    a = create(api, patient("A1", resident_id=ZHANG))
    b = create(api, patient("B1", "h2", resident_id=ZHANG))
    for pid, code in ((a, "8867-4"), (b, "8310-5")):
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
        }
        assert api.post("Observation", obs).status_code == 201
    e = enterprise(services, a)
    bundle = api.get(f"{e}/$everything").json
    kinds = sorted(
        (x["resource"]["resourceType"], x["resource"].get("id")) for x in bundle["entry"]
    )
    assert [k for k, _ in kinds].count("Observation") == 2
    assert {i for k, i in kinds if k == "Patient"} >= {a, b, e.split("/")[1]}
    # a source Patient's own $everything is still just its own
    own = api.get(f"Patient/{a}/$everything").json
    assert [x["resource"]["resourceType"] for x in own["entry"]].count("Observation") == 1


def test_identity_operations_answer_operation_outcomes(api: Api) -> None:
    res = api.post("Patient/$link", {"resourceType": "Parameters", "parameter": []})
    assert res.status_code == 400
    assert res.json["resourceType"] == "OperationOutcome"
    res = api.post(
        "Patient/$unlink",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "source-patient", "valueReference": {"reference": "Patient/nope"}}
            ],
        },
    )
    assert res.status_code == 404
    assert res.json["resourceType"] == "OperationOutcome"
    assert orjson.loads(res.data)["issue"]


def test_card_number_links_deterministically(api: Api, services: Services) -> None:
    card = {
        "resourceType": "Patient",
        "meta": {"tag": [{"system": "urn:hie:identity", "code": "card"}]},
        "identifier": [
            {"system": RESIDENT_ID_SYSTEM, "value": ZHANG},
            {"system": "urn:hie:mianzhou-pass", "value": "5107100000000123"},
        ],
        "name": [{"family": "张", "given": ["伟"]}],
        "gender": "male",
        "birthDate": "1980-01-01",
    }
    holder = create(api, card)
    # a hospital that read the card but keeps only a pinyin name and no resident ID
    visit = patient("V1", "h5", family="Zhang", given="Wei", phone=None, birth="1980-10-01")
    visit["identifier"].append({"system": "urn:hie:mianzhou-pass", "value": "5107100000000123"})
    seen = create(api, visit)
    e = enterprise(services, holder)
    assert enterprise(services, seen) == e
    assert links(api, e)[f"Patient/{seen}"] == "auto"


def test_card_readers_resolve_enterprise_patients(api: Api, services: Services) -> None:
    a = create(api, patient("A1", resident_id=ZHANG))
    reader = RequestContext(actor="reader", scopes=Scopes("card.identify"))
    assert services.exchange.enterprise_of(reader, f"Patient/{a}") == enterprise(services, a)
    with pytest.raises(Forbidden):
        services.exchange.enterprise_of(RequestContext(actor="nobody"), f"Patient/{a}")
    with pytest.raises(NotFound):
        services.exchange.enterprise_of(SYS, "Patient/unknown")
