"""ORU^R01 -> DiagnosticReport, Observations (by value type), Specimen; LOINC via ConceptMap."""

from __future__ import annotations

from hie.context import RequestContext
from tests.adapters.hl7v2.hl7_support import (
    FakeExchange,
    fixture_bytes,
    make_sender,
    map_message,
    request_of,
    resources,
)

SENDER = make_sender("LIS", "MYZX")
ORU = (
    "MSH|^~\\&|LIS|MYZX|HIE|HIE|20240316083000||ORU^R01^ORU_R01|LIS0001|P|2.5\r"
    "PID|1||MYZX000123^^^MYZX^MR||张^三||19900101|M\r"
    "OBR|1|ORD001^HIS|LAB001^LIS|CBC^血常规^L|||20240316070000|||||||||||||||"
    "20240316083000|||F\r"
    "NTE|1||标本轻度溶血\r"
    "OBX|1|NM|HGB^血红蛋白^L||135|g/L|130-175|N|||F|||202403160800\r"
    "OBX|2|NM|9999^白细胞计数^99LIS||11.2|10*9/L|3.5-9.5|H|||F|||20240316\r"
    "OBX|3|ST|ABO^血型^L||A型||||||F\r"
    "OBX|4|SN|CRP^C反应蛋白^L||<^5|mg/L|<10|N|||F\r"
    "OBX|5|SN|TITER^滴度^L||^1^:^128||||||P\r"
    "OBX|6|SN|RANGE^范围^L||^10^-^20|%|||||C\r"
    "OBX|7|CWE|BACT^细菌^L||27268008^Salmonella^SCT||||||F\r"
    "OBX|8|TX|NOTE^备注^L||第一行~第二行||||||F\r"
    "OBX|9|DT|DUE^复查日期^L||20240401||||||F\r"
    "OBX|10|TS|DRAWN^采样时间^L||202403160700+0800||||||F\r"
    "NTE|1||采样顺利\r"
    "SPM|1|SP001||BLD^全血^HL70487|||||||||||||202403160700|202403160730\r"
)
CTX = RequestContext.system()


def test_report_keyed_by_filler_with_placer_and_status() -> None:
    bundle = map_message(ORU, SENDER)
    (report,) = resources(bundle, "DiagnosticReport")
    assert request_of(bundle, report)["url"] == (
        "DiagnosticReport?identifier=urn:hie:hl7v2:MYZX:id:LIS|LAB001"
    )
    assert [i["type"]["coding"][0]["code"] for i in report["identifier"]] == ["FILL", "PLAC"]
    assert report["status"] == "final"
    assert report["effectiveDateTime"] == "2024-03-16T07:00:00+08:00"
    assert report["issued"] == "2024-03-16T08:30:00+08:00"
    assert report["conclusion"] == "标本轻度溶血"
    assert len(report["result"]) == 10
    assert report["basedOn"][0]["identifier"]["value"] == "ORD001"


def test_local_codes_keep_their_system_and_gain_loinc() -> None:
    observations = resources(map_message(ORU, SENDER), "Observation")
    hgb = observations[0]["code"]["coding"]
    assert hgb[0] == {"system": "urn:hie:hl7v2:MYZX:cs:L", "code": "HGB", "display": "血红蛋白"}
    assert hgb[1]["system"] == "http://loinc.org"
    assert hgb[1]["code"] == "718-7"
    # An unknown local code still translates by its Chinese name.
    wbc = observations[1]["code"]["coding"]
    assert wbc[0]["system"] == "urn:hie:hl7v2:MYZX:cs:99LIS"
    assert wbc[1]["code"] == "6690-2"


def test_values_by_obx2() -> None:
    obs = resources(map_message(ORU, SENDER), "Observation")
    assert obs[0]["valueQuantity"] == {
        "value": 135,
        "unit": "g/L",
        "system": "http://unitsofmeasure.org",
        "code": "g/L",
    }
    assert obs[1]["valueQuantity"]["value"] == 11.2
    assert obs[1]["valueQuantity"]["code"] == "10*9/L"
    assert obs[2]["valueString"] == "A型"
    assert obs[3]["valueQuantity"]["comparator"] == "<"
    assert obs[3]["valueQuantity"]["value"] == 5
    assert obs[4]["valueRatio"] == {"numerator": {"value": 1}, "denominator": {"value": 128}}
    assert obs[5]["valueRange"]["low"]["value"] == 10
    assert obs[5]["valueRange"]["high"]["code"] == "%"
    assert obs[6]["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "27268008",
        "display": "Salmonella",
    }
    assert obs[7]["valueString"] == "第一行\n第二行"
    assert obs[8]["valueDateTime"] == "2024-04-01"
    assert obs[9]["valueDateTime"] == "2024-03-16T07:00:00+08:00"


def test_range_interpretation_status_time_and_notes() -> None:
    obs = resources(map_message(ORU, SENDER), "Observation")
    assert obs[0]["referenceRange"] == [
        {
            "low": {
                "value": 130,
                "unit": "g/L",
                "system": "http://unitsofmeasure.org",
                "code": "g/L",
            },
            "high": {
                "value": 175,
                "unit": "g/L",
                "system": "http://unitsofmeasure.org",
                "code": "g/L",
            },
        }
    ]
    assert obs[3]["referenceRange"][0]["high"]["value"] == 10
    assert obs[1]["interpretation"][0]["coding"][0]["code"] == "H"
    assert [o["status"] for o in obs[3:6]] == ["final", "preliminary", "corrected"]
    # Precision is kept; a time without an offset takes the sender's (+08:00).
    assert obs[0]["effectiveDateTime"] == "2024-03-16T08:00:00+08:00"
    assert obs[1]["effectiveDateTime"] == "2024-03-16"
    assert obs[9]["note"] == [{"text": "采样顺利"}]


def test_specimen() -> None:
    bundle = map_message(ORU, SENDER)
    (specimen,) = resources(bundle, "Specimen")
    assert specimen["identifier"][0]["value"] == "SP001"
    assert specimen["type"]["coding"][0]["code"] == "BLD"
    assert specimen["collection"]["collectedDateTime"] == "2024-03-16T07:00:00+08:00"
    (report,) = resources(bundle, "DiagnosticReport")
    (spec_entry,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Specimen"]
    assert report["specimen"] == [{"reference": spec_entry["fullUrl"]}]


def test_corrected_results_update_the_same_observations() -> None:
    exchange = FakeExchange()
    exchange.transaction(CTX, map_message(ORU, SENDER))
    corrected = ORU.replace("LIS0001", "LIS0002").replace(
        "||135|g/L|130-175|N|||F", "||128|g/L|130-175|L|||C"
    )
    exchange.transaction(CTX, map_message(corrected, SENDER))
    assert len(exchange.all("Observation")) == 10
    assert len(exchange.all("DiagnosticReport")) == 1
    hgb = [o for o in exchange.all("Observation") if o["code"]["coding"][0]["code"] == "HGB"]
    assert hgb[0]["valueQuantity"]["value"] == 128
    assert hgb[0]["status"] == "corrected"
    (report,) = exchange.all("DiagnosticReport")
    assert all(r["reference"].startswith("Observation/") for r in report["result"])


def test_lri_cbc_sample() -> None:
    bundle = map_message(fixture_bytes("valid/msconv__LRI_2.0-NG_CBC_Typ_Message.hl7"))
    obs = resources(bundle, "Observation")
    assert len(obs) == 28
    assert obs[1]["code"]["coding"][0]["code"] == "718-7"
    assert obs[1]["effectiveDateTime"] == "2011-01-03T14:34:28-08:00"
    assert obs[19]["valueCodeableConcept"]["text"] == "Moderate Anisocytosis"
