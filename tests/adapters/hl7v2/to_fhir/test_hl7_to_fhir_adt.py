"""ADT events -> Encounter (status per event), allergies, diagnoses, coverage."""

from __future__ import annotations

import pytest

from hie.context import RequestContext
from tests.adapters.hl7v2.hl7_support import (
    FakeExchange,
    fixture_bytes,
    make_sender,
    map_message,
    request_of,
    resources,
)

SENDER = make_sender("HIS", "MYZX")
BASE = (
    "MSH|^~\\&|HIS|MYZX|HIE|HIE|20240315103000||ADT^{event}^ADT_A01|{control}|P|2.5\r"
    "EVN|{event}|20240315103000||||20240315102000\r"
    "PID|1||M1^^^^MR||王^五||19800101|F\r"
    "PV1|1|I|内科^301^2^MYZX|R|||D001^王^医生|||||||7|||||V001|||||||||||||||||||||||||"
    "202403151000|{discharge}\r"
    "AL1|1|DA|Z88.0^青霉素过敏^I10|SV|皮疹~呼吸困难|20240101\r"
    "DG1|1||I10^原发性高血压^I10|原发性高血压|20240315|F\r"
    "IN1|1|CITY^城镇职工医保|MYYB^^^^NII|绵阳市医疗保障局||||||||20240101|20241"
    "231||||SEL|||||||||||||||||||YB123456\r"
)


def adt(event: str, control: str = "C1", discharge: str = "") -> str:
    return BASE.format(event=event, control=control, discharge=discharge)


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("A01", "in-progress"),
        ("A02", "in-progress"),
        ("A03", "finished"),
        ("A04", "planned"),
        ("A05", "planned"),
        ("A06", "in-progress"),
        ("A07", "in-progress"),
        ("A11", "cancelled"),
        ("A12", "in-progress"),
        ("A13", "in-progress"),
    ],
)
def test_encounter_status_follows_the_event(event: str, status: str) -> None:
    (encounter,) = resources(map_message(adt(event), SENDER), "Encounter")
    assert encounter["status"] == status


def test_a08_status_comes_from_the_visit_times() -> None:
    (open_visit,) = resources(map_message(adt("A08"), SENDER), "Encounter")
    (closed,) = resources(map_message(adt("A08", discharge="202403201000"), SENDER), "Encounter")
    assert (open_visit["status"], closed["status"]) == ("in-progress", "finished")


def test_person_events_write_no_encounter() -> None:
    for event in ("A28", "A31"):
        assert resources(map_message(adt(event), SENDER), "Encounter") == []


def test_encounter_content_and_key() -> None:
    bundle = map_message(adt("A03", discharge="202403201030"), SENDER)
    (encounter,) = resources(bundle, "Encounter")
    assert (
        request_of(bundle, encounter)["url"] == "Encounter?identifier=urn:hie:hl7v2:MYZX:visit|V001"
    )
    assert encounter["class"]["code"] == "IMP"
    assert encounter["period"] == {
        "start": "2024-03-15T10:00:00+08:00",
        "end": "2024-03-20T10:30:00+08:00",
    }
    assert encounter["location"] == [
        {"location": {"display": "内科, 301, 2, MYZX"}, "status": "completed"}
    ]
    assert encounter["participant"][0]["individual"] == {
        "type": "Practitioner",
        "identifier": {"value": "D001"},
        "display": "王医生",
    }
    assert encounter["hospitalization"]["admitSource"]["coding"][0]["code"] == "7"
    assert encounter["serviceProvider"] == {"reference": "Organization/hosp-1"}


def test_a03_without_discharge_time_ends_at_the_event_time() -> None:
    (encounter,) = resources(map_message(adt("A03"), SENDER), "Encounter")
    assert encounter["period"]["end"] == "2024-03-15T10:20:00+08:00"


def test_allergy_diagnosis_and_coverage() -> None:
    bundle = map_message(adt("A01"), SENDER)
    (allergy,) = resources(bundle, "AllergyIntolerance")
    assert allergy["code"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/icd-10",
        "code": "Z88.0",
        "display": "青霉素过敏",
    }
    assert allergy["category"] == ["medication"]
    assert allergy["criticality"] == "high"
    assert allergy["reaction"] == [{"manifestation": [{"text": "皮疹"}, {"text": "呼吸困难"}]}]
    (condition,) = resources(bundle, "Condition")
    assert condition["code"]["text"] == "原发性高血压"
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
    (encounter_entry,) = [
        e for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
    ]
    assert condition["encounter"] == {"reference": encounter_entry["fullUrl"]}
    (coverage,) = resources(bundle, "Coverage")
    assert coverage["payor"][0]["display"] == "绵阳市医疗保障局"
    assert coverage["subscriberId"] == "YB123456"
    assert coverage["relationship"]["coding"][0]["code"] == "self"
    assert coverage["period"] == {"start": "2024-01-01", "end": "2024-12-31"}


def test_a_visit_through_its_events_is_one_encounter() -> None:
    exchange = FakeExchange()
    ctx = RequestContext.system()
    for i, event in enumerate(["A04", "A01", "A02", "A08", "A03"]):
        discharge = "202403201030" if event == "A03" else ""
        exchange.transaction(ctx, map_message(adt(event, f"C{i}", discharge), SENDER))
    (encounter,) = exchange.all("Encounter")
    assert encounter["status"] == "finished"
    for rtype in ("Patient", "AllergyIntolerance", "Condition", "Coverage"):
        assert len(exchange.all(rtype)) == 1, rtype
    assert len(exchange.all("Provenance")) == 5


def test_sample_a01_maps_its_next_of_kin_and_insurance() -> None:
    bundle = map_message(fixture_bytes("valid/msconv__ADT01-23.hl7"))
    assert len(resources(bundle, "RelatedPerson")) == 1
    assert len(resources(bundle, "Coverage")) == 3
