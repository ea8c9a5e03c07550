"""PID -> source Patient (Chinese names, resident ID, MRN key), NK1, A40 merge."""

from __future__ import annotations

from hie.context import RequestContext
from tests.adapters.hl7v2.hl7_support import (
    FakeExchange,
    fixture_bytes,
    make_sender,
    map_message,
    request_of,
    resident_id,
    resources,
)

RIC = resident_id("51070319900101123")
MSG = (
    "MSH|^~\\&|HIS|MYZX|HIE|HIE|20240315103000||ADT^A28^ADT_A05|CN0001|P|2.5\r"
    "EVN|A28|20240315103000\r"
    f"PID|1||MYZX000123^^^MYZX^MR~{RIC}^^^^NNCHN||张^三||199001010830|1|||"
    "临园路东段1号^^绵阳市^四川省^621000^CHN^H^^涪城区||^PRN^CP^^^^^^^^^13800138000"
    "||zh^中文^ISO639|20\r"
    "NK1|1|李^四|SPO^配偶^HL70063||^PRN^PH^^^^^^^^^08162222222\r"
)
SENDER = make_sender("HIS", "MYZX", mrn_system="urn:oid:1.2.156.112233.1.1")
CTX = RequestContext.system()


def test_source_patient_is_keyed_by_the_senders_mrn_system() -> None:
    bundle = map_message(MSG, SENDER)
    (patient,) = resources(bundle, "Patient")
    assert request_of(bundle, patient) == {
        "method": "PUT",
        "url": "Patient?identifier=urn:oid:1.2.156.112233.1.1|MYZX000123",
    }
    assert patient["identifier"][0] == {
        "system": "urn:oid:1.2.156.112233.1.1",
        "value": "MYZX000123",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
        },
    }
    assert patient["managingOrganization"] == {"reference": "Organization/hosp-1"}
    assert patient["meta"]["source"] == "urn:hie:hl7v2:HIS:MYZX#CN0001"


def test_resident_id_goes_under_the_national_system() -> None:
    (patient,) = resources(map_message(MSG, SENDER), "Patient")
    ric = [i for i in patient["identifier"] if i["value"] == RIC]
    assert ric == [
        {
            "value": RIC,
            "system": "urn:oid:2.16.156.10011.1.3",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNCHN"}
                ]
            },
        }
    ]


def test_resident_id_by_the_senders_assigning_authority() -> None:
    msg = MSG.replace(f"{RIC}^^^^NNCHN", f"{RIC}^^^SFZ^ID")
    sender = make_sender("HIS", "MYZX", resident_id_authority="SFZ")
    (patient,) = resources(map_message(msg, sender), "Patient")
    assert [i["system"] for i in patient["identifier"] if i["value"] == RIC] == [
        "urn:oid:2.16.156.10011.1.3"
    ]
    # Without the setting the same identifier stays the facility's own.
    (plain,) = resources(map_message(msg, SENDER), "Patient")
    assert [i["system"] for i in plain["identifier"] if i["value"] == RIC] == [
        "urn:hie:hl7v2:MYZX:id:SFZ"
    ]


def test_chinese_name_address_phone_and_codes() -> None:
    (patient,) = resources(map_message(MSG, SENDER), "Patient")
    assert patient["name"] == [{"family": "张", "given": ["三"], "text": "张三"}]
    assert patient["gender"] == "male"  # GB/T 2261.1 code 1
    assert patient["birthDate"] == "1990-01-01"
    assert patient["_birthDate"]["extension"][0]["valueDateTime"] == "1990-01-01T08:30:00+08:00"
    assert patient["address"] == [
        {
            "line": ["临园路东段1号"],
            "city": "绵阳市",
            "state": "四川省",
            "postalCode": "621000",
            "country": "CHN",
            "district": "涪城区",
            "use": "home",
            "text": "四川省绵阳市涪城区临园路东段1号",
        }
    ]
    assert patient["telecom"] == [{"system": "phone", "value": "13800138000", "use": "mobile"}]
    assert patient["maritalStatus"]["coding"][0]["code"] == "M"  # GB/T 2261.2 code 20


def test_next_of_kin_becomes_a_related_person() -> None:
    bundle = map_message(MSG, SENDER)
    (person,) = resources(bundle, "RelatedPerson")
    (patient_entry,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert person["patient"] == {"reference": patient_entry["fullUrl"]}
    assert person["name"][0]["text"] == "李四"
    assert person["relationship"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0063",
        "code": "SPO",
        "display": "配偶",
    }


def test_mapping_twice_writes_nothing_twice() -> None:
    exchange = FakeExchange()
    exchange.transaction(CTX, map_message(MSG, SENDER))
    changed = MSG.replace("张^三", "张^叁")
    exchange.transaction(CTX, map_message(changed.replace("CN0001", "CN0002"), SENDER))
    exchange.transaction(CTX, map_message(MSG, SENDER))  # a replay of the first
    (patient,) = exchange.all("Patient")
    assert patient["name"][0]["text"] == "张三"
    assert len(exchange.all("RelatedPerson")) == 1
    assert len(exchange.all("Provenance")) == 2


def test_a40_merge_links_survivor_and_merged_and_deactivates_the_merged() -> None:
    exchange = FakeExchange()
    sender = make_sender("Ntierprise", "Ntierprise Clinic")
    old = (
        "MSH|^~\\&|Ntierprise|Ntierprise Clinic|X|X|20190423150000||ADT^A28^ADT_A05|reg-1|P|2.8\r"
        "PID|1||56789^^^BCBS^MR||Test^Old||20180205|F|||Old Street^^Raleigh^NC\r"
    )
    exchange.transaction(CTX, map_message(old, sender))
    exchange.transaction(CTX, map_message(fixture_bytes("valid/msconv__ADT-A40-01.hl7"), sender))
    system = sender.mrn_system
    (survivor,) = exchange.by_identifier("Patient", system, "12345")
    (merged,) = exchange.by_identifier("Patient", system, "56789")
    assert survivor["active"] is True
    assert merged["active"] is False
    assert survivor["link"] == [
        {"other": {"reference": f"Patient/{merged['id']}"}, "type": "replaces"}
    ]
    assert merged["link"] == [
        {"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}
    ]
    assert len(exchange.all("Patient")) == 2


def test_a40_with_two_pairs_merges_both() -> None:
    bundle = map_message(fixture_bytes("valid/msconv__ADT-A40-02.hl7"))
    patients = resources(bundle, "Patient")
    assert sorted((p["identifier"][0]["value"], p["active"]) for p in patients) == [
        ("12345", True),
        ("145", True),
        ("56789", False),
        ("569", False),
    ]
