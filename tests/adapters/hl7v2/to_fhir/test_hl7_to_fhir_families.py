"""Orders, appointments, documents, immunizations and the Provenance of every message."""

from __future__ import annotations

import base64

import pytest

from adapters.hl7v2.to_fhir import MappingError
from hie.context import RequestContext
from tests.adapters.hl7v2.hl7_support import (
    FakeExchange,
    fixture_bytes,
    map_message,
    request_of,
    resources,
)


def test_orders_carry_placer_and_filler_numbers() -> None:
    bundle = map_message(fixture_bytes("valid/msconv__ORM-O01-01.hl7"))
    (request,) = resources(bundle, "ServiceRequest")
    idents = {i["type"]["coding"][0]["code"]: i["value"] for i in request["identifier"]}
    assert idents == {"PLAC": "1101", "FILL": "1201"}
    assert request["status"] == "active"
    assert request["intent"] == "order"
    assert request["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "24725-4",
        "display": "CT Head",
    }
    assert request_of(bundle, request)["url"].endswith("|1101")


def test_oml_with_specimens() -> None:
    bundle = map_message(fixture_bytes("valid/msconv__OML-O21-03.hl7"))
    assert len(resources(bundle, "ServiceRequest")) == 5
    assert len(resources(bundle, "Specimen")) == 3


def test_appointments_book_and_cancel() -> None:
    exchange = FakeExchange()
    ctx = RequestContext.system()
    exchange.transaction(ctx, map_message(fixture_bytes("valid/msconv__SIU-S12-01.hl7")))
    (booked,) = exchange.all("Appointment")
    assert booked["status"] == "booked"
    assert booked["start"] == "2020-10-01T11:26:00+02:15"
    assert booked["participant"][0]["actor"]["reference"].startswith("Patient/")
    cancel = fixture_bytes("valid/msconv__SIU-S15-01.hl7")
    exchange.transaction(ctx, map_message(cancel))
    (cancelled,) = exchange.all("Appointment")
    assert cancelled["status"] == "cancelled"


def test_document_with_text_content() -> None:
    bundle = map_message(fixture_bytes("valid/msconv__MDM-T02-03.hl7"))
    (doc,) = resources(bundle, "DocumentReference")
    assert doc["masterIdentifier"]["value"] == "2RWRVAJ627408"
    assert doc["type"]["coding"][0]["code"] == "DS"
    assert doc["docStatus"] == "preliminary"
    text = base64.b64decode(doc["content"][0]["attachment"]["data"]).decode()
    assert (
        text.splitlines()[0]
        == "Toilet cylinder crackers model step-mother visor opening communication"
    )
    assert len(text.splitlines()) == 29


def test_immunizations() -> None:
    bundle = map_message(fixture_bytes("valid/msconv__VXU.hl7"))
    first, *history = resources(bundle, "Immunization")
    assert first["vaccineCode"]["coding"][0]["code"] == "49281-0215-88"
    assert first["occurrenceDateTime"] == "2015-06-24"
    assert first["primarySource"] is True
    assert first["lotNumber"] == "315841"
    assert first["doseQuantity"] == {
        "value": 0.5,
        "unit": "mL",
        "system": "http://unitsofmeasure.org",
        "code": "mL",
    }
    assert first["route"]["coding"][0]["code"] == "C28161"
    assert [h["primarySource"] for h in history] == [False, False]


def test_every_message_gets_one_provenance_and_meta_source() -> None:
    bundle = map_message(fixture_bytes("valid/msconv__LAB-ORU-1.hl7"))
    (provenance,) = resources(bundle, "Provenance")
    others = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Provenance"]
    assert len(provenance["target"]) == len(others)
    assert provenance["recorded"] == "2014-10-06T06:45:00+07:00"
    assert provenance["entity"][0]["what"]["identifier"]["value"] == "182"
    assert provenance["agent"][0]["who"] == {"reference": "Organization/hosp-1"}
    assert request_of(bundle, provenance) == {
        "method": "POST",
        "url": "Provenance",
        "ifNoneExist": "_source=urn%3Ahie%3Ahl7v2%3ASomeSystem%3A%23182",
    }
    assert {e["resource"]["meta"]["source"] for e in bundle["entry"]} == {
        "urn:hie:hl7v2:SomeSystem:#182"
    }


def test_an_unsupported_type_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        map_message(fixture_bytes("valid/msconv__BAR-P01-01.hl7"))
    assert info.value.location == "MSH-9"
