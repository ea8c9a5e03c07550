"""Extraction checked against hand-computed rows on real Synthea resources and edge cases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from hie.search import Extractor, SearchRegistry
from hie.search.dates import DATE_MAX, DATE_MIN, from_datetime
from hie.search.rows import (
    CompositeRow,
    DateRow,
    IndexRow,
    NumberRow,
    OfTypeRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    TokenTextRow,
    UriRow,
)

Finder = Callable[[str, str], dict[str, Any]]
LOCAL_BASE = "https://hie.example.cn/fhir"
CST = timezone(timedelta(hours=8))
EDT = timezone(timedelta(hours=-4))
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def of(rows: list[IndexRow], param: str) -> list[IndexRow]:
    return [r for r in rows if r.param == param]


def us(*args: Any, tz: timezone = UTC) -> int:
    return from_datetime(datetime(*args).replace(tzinfo=tz))


# -- real Synthea resources ----------------------------------------------------------


def test_synthea_patient(extractor: Extractor, find: Finder) -> None:
    rows = extractor.extract(find("Patient", "7b4cf3d5-26bd-4c44-8f45-f11928c63c0e"))
    assert set(of(rows, "family")) == {StringRow("family", "jacobs452", "Jacobs452")}
    assert set(of(rows, "given")) == {StringRow("given", "abraham100", "Abraham100")}
    assert {r.exact for r in of(rows, "name")} == {  # type: ignore[union-attr]
        "Jacobs452",
        "Abraham100",
        "Mr.",
        "Abraham100 Jacobs452",
    }
    assert set(of(rows, "gender")) == {TokenRow("gender", None, "male")}
    assert set(of(rows, "birthdate")) == {
        DateRow("birthdate", us(1983, 6, 13, tz=CST), us(1983, 6, 14, tz=CST) - 1)
    }
    assert set(of(rows, "phone")) == {TokenRow("phone", "phone", "555-185-5373")}
    assert set(of(rows, "telecom")) == {TokenRow("telecom", "phone", "555-185-5373")}
    assert TokenRow("identifier", "http://hl7.org/fhir/sid/us-ssn", "999-83-6585") in rows
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    assert OfTypeRow("identifier", v2, "SS", "999-83-6585") in rows
    assert OfTypeRow("identifier", v2, "DL", "S99915022") in rows
    assert TokenTextRow("identifier", "social security number") in rows
    assert {r.exact for r in of(rows, "address")} == {  # type: ignore[union-attr]
        "166 Pouros Fort Apt 61",
        "Revere",
        "MA",
        "US",
    }
    assert set(of(rows, "address-city")) == {StringRow("address-city", "revere", "Revere")}
    assert set(of(rows, "_profile")) == {
        UriRow("_profile", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")
    }
    assert of(rows, "_id") == []
    assert of(rows, "_lastUpdated") == []
    # "Patient.deceased.exists() and Patient.deceased != false" is false: not deceased.
    assert set(of(rows, "deceased")) == {TokenRow("deceased", None, "false")}


def test_synthea_blood_pressure(extractor: Extractor, find: Finder) -> None:
    obs = find("Observation", "abf57e49-89ca-410a-985e-f9438d6128e4")
    rows = extractor.extract(obs)
    assert set(of(rows, "code")) == {
        TokenRow("code", LOINC, "85354-9"),
        TokenTextRow("code", "blood pressure"),
    }
    t = us(2011, 8, 22, 8, 18, 46, tz=EDT)
    assert set(of(rows, "date")) == {DateRow("date", t, t + 999_999)}
    assert set(of(rows, "status")) == {TokenRow("status", None, "final")}
    assert set(of(rows, "category")) == {
        TokenRow(
            "category", "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs"
        ),
        TokenTextRow("category", "vital-signs"),
    }
    # urn:uuid references (before a transaction rewrites them) index as URLs, and the
    # "patient" parameter (subject.where(resolve() is Patient)) cannot tell the type.
    assert set(of(rows, "subject")) == {
        ReferenceRow("subject", None, None, None, "urn:uuid:7b4cf3d5-26bd-4c44-8f45-f11928c63c0e")
    }
    assert of(rows, "patient") == []
    mmhg = {"system": UCUM, "code": "mm[Hg]", "unit": "mm[Hg]", "canonical_code": "Pa"}
    dia = QuantityRow(
        "component-value-quantity", Decimal(86), Decimal(86), **mmhg,
        canonical_low=Decimal("86") * Decimal("133.322"),
        canonical_high=Decimal("86") * Decimal("133.322"),
    )  # fmt: skip
    assert dia in of(rows, "component-value-quantity")
    composite = of(rows, "component-code-value-quantity")
    assert len(composite) == 2
    pairs = {
        (c.components[0].code, c.components[1].low)  # type: ignore[union-attr]
        for c in composite
        if isinstance(c, CompositeRow)
    }
    assert pairs == {("8462-4", Decimal(86)), ("8480-6", Decimal(111))}
    # The panel has no value of its own: code-value-quantity has no row.
    assert of(rows, "code-value-quantity") == []
    # combo-: the Observation's own code/value and each component's.
    combo = of(rows, "combo-code-value-quantity")
    assert len(combo) == 2
    assert all(isinstance(c, CompositeRow) and c.signature == "token,quantity" for c in combo)


def test_rewritten_references_are_local(extractor: Extractor, find: Finder) -> None:
    obs = find("Observation", "abf57e49-89ca-410a-985e-f9438d6128e4")
    obs["subject"] = {"reference": "Patient/7b4cf3d5"}
    obs["encounter"] = {"reference": f"{LOCAL_BASE}/Encounter/e1/_history/3"}
    obs["performer"] = [{"reference": "https://other.example.org/fhir/Practitioner/9"}]
    rows = extractor.extract(obs)
    assert set(of(rows, "subject")) == {ReferenceRow("subject", "Patient", "7b4cf3d5", None, None)}
    assert set(of(rows, "patient")) == {ReferenceRow("patient", "Patient", "7b4cf3d5", None, None)}
    assert set(of(rows, "encounter")) == {ReferenceRow("encounter", "Encounter", "e1", "3", None)}
    assert set(of(rows, "performer")) == {
        ReferenceRow("performer", None, None, None, "https://other.example.org/fhir/Practitioner/9")
    }


def test_synthea_encounter_period(extractor: Extractor, find: Finder) -> None:
    enc = find("Encounter", "09775519-5327-3bbf-cb95-66313dde54ee")
    rows = extractor.extract(enc)
    est = timezone(timedelta(hours=-5))
    assert set(of(rows, "date")) == {
        DateRow(
            "date", us(1940, 3, 29, 0, 11, 45, tz=est), us(1940, 3, 29, 0, 26, 45, tz=est) + 999_999
        )
    }
    assert set(of(rows, "class")) == {
        TokenRow("class", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB")
    }
    assert TokenRow("type", "http://snomed.info/sct", "410620009") in rows


def test_synthea_coverage_open_period(extractor: Extractor, find: Finder) -> None:
    rows = extractor.extract(find("Coverage", "55c952c8-7a1c-4b97-b7d1-a60a671d75ff"))
    assert set(of(rows, "type")) >= {
        TokenRow("type", "https://nahdo.org/sopt", "3712"),
        TokenRow("type", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "PPO"),
        TokenTextRow("type", "ppo"),
    }
    assert (
        OfTypeRow(
            "identifier",
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            "MB",
            "f4a375d2-4e53-4f81-ba95-345e7573b550",
        )
        in rows
    )


def test_synthea_immunization_and_medication(extractor: Extractor, find: Finder) -> None:
    imm = extractor.extract(find("Immunization", "5fcf5168-b07d-a0ba-868c-cb347172a33d"))
    assert TokenRow("vaccine-code", "http://hl7.org/fhir/sid/cvx", "140") in imm
    t = us(1945, 3, 9, 1, 11, 45, tz=EDT)
    assert set(of(imm, "date")) == {DateRow("date", t, t + 999_999)}
    med = extractor.extract(find("MedicationRequest", "3b2213dc-bab5-fe66-63c2-db1e83a75c1b"))
    # (MedicationRequest.medication as CodeableConcept): the choice type picks the branch.
    assert set(of(med, "code")) == {
        TokenRow("code", "http://www.nlm.nih.gov/research/umls/rxnorm", "243670"),
        TokenTextRow("code", "aspirin 81 mg oral tablet"),
    }
    assert set(of(med, "intent")) == {TokenRow("intent", None, "order")}


def test_chinese_patient(extractor: Extractor, find: Finder) -> None:
    rows = extractor.extract(find("Patient", "pat-example"))
    names = {r.norm for r in of(rows, "name")}  # type: ignore[union-attr]
    assert "陳加玲" in names
    assert "chen" in names
    assert "chia lin" in names
    assert TokenRow("identifier", "http://www.moi.gov.tw", "A123456789") in rows


def test_every_fixture_resource_extracts(
    extractor: Extractor, fixture_resources: list[dict[str, Any]]
) -> None:
    total = 0
    for r in fixture_resources:
        rows = extractor.extract(r)
        assert len(rows) == len(set(rows))
        total += len(rows)
    assert total > 3000


# -- hand-made edge cases -------------------------------------------------------------


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **fields}


def test_chinese_name_parts_and_whole(extractor: Extractor) -> None:
    rows = extractor.extract(patient(name=[{"family": "张", "given": ["三"]}]))
    assert {r.norm for r in of(rows, "name")} == {"张", "三", "张三"}  # type: ignore[union-attr]
    assert set(of(rows, "family")) == {StringRow("family", "张", "张")}


def test_accents_and_case_are_normalised(extractor: Extractor) -> None:
    rows = extractor.extract(patient(name=[{"text": "Renée Ångström-Müller"}]))
    assert set(of(rows, "name")) == {
        StringRow("name", "renee angstrom-muller", "Renée Ångström-Müller")
    }


def test_date_precision(extractor: Extractor) -> None:
    rows = extractor.extract(patient(birthDate="2013-01"))
    assert set(of(rows, "birthdate")) == {
        DateRow("birthdate", us(2013, 1, 1, tz=CST), us(2013, 2, 1, tz=CST) - 1)
    }
    rows = extractor.extract(patient(birthDate="2012"))
    assert set(of(rows, "birthdate")) == {
        DateRow("birthdate", us(2012, 1, 1, tz=CST), us(2013, 1, 1, tz=CST) - 1)
    }


def test_offsets_are_honoured(registry: SearchRegistry) -> None:
    utc = Extractor(registry, default_offset=timedelta(0), resource_types=["Patient"])
    rows = utc.extract(patient(birthDate="2013-01-05"))
    assert set(of(rows, "birthdate")) == {DateRow("birthdate", us(2013, 1, 5), us(2013, 1, 6) - 1)}


def test_period_open_ends(extractor: Extractor) -> None:
    enc = {"resourceType": "Encounter", "id": "e", "period": {"start": "2020-05-01T10:00:00+08:00"}}
    rows = extractor.extract(enc)
    assert set(of(rows, "date")) == {DateRow("date", us(2020, 5, 1, 10, tz=CST), DATE_MAX)}
    enc["period"] = {"end": "2020-05-01"}
    rows = extractor.extract(enc)
    assert set(of(rows, "date")) == {DateRow("date", DATE_MIN, us(2020, 5, 2, tz=CST) - 1)}


def test_fractional_seconds_and_bad_dates(extractor: Extractor) -> None:
    obs = {"resourceType": "Observation", "id": "o", "effectiveInstant": "2020-01-01T00:00:00.25Z"}
    rows = extractor.extract(obs)
    t = us(2020, 1, 1) + 250_000
    assert set(of(rows, "date")) == {DateRow("date", t, t + 9_999)}
    obs["effectiveInstant"] = "2020-02-30T00:00:00Z"  # invalid: no row, no exception
    assert of(extractor.extract(obs), "date") == []


def test_timing_spans_events_and_bounds(extractor: Extractor) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "effectiveTiming": {
            "event": ["2020-01-03", "2020-01-01"],
            "repeat": {"boundsPeriod": {"start": "2019-12-30", "end": "2020-01-02"}},
        },
    }
    assert set(of(extractor.extract(obs), "date")) == {
        DateRow("date", us(2019, 12, 30, tz=CST), us(2020, 1, 4, tz=CST) - 1)
    }


def test_choice_types_pick_the_right_branch(extractor: Extractor) -> None:
    cond = {
        "resourceType": "Condition",
        "id": "c",
        "onsetAge": {"value": 40, "unit": "a", "system": UCUM, "code": "a"},
        "abatementString": "in remission",
        "subject": {"reference": "Patient/p1"},
    }
    rows = extractor.extract(cond)
    assert of(rows, "onset-date") == []
    assert set(of(rows, "onset-age")) == {
        QuantityRow(
            "onset-age", Decimal(40), Decimal(40), UCUM, "a", "a", "s",
            Decimal(40) * Decimal(31557600), Decimal(40) * Decimal(31557600),
        )
    }  # fmt: skip
    assert set(of(rows, "abatement-string")) == {
        StringRow("abatement-string", "in remission", "in remission")
    }
    assert set(of(rows, "patient")) == {ReferenceRow("patient", "Patient", "p1", None, None)}


def test_observation_value_types(extractor: Extractor) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "code": {"coding": [{"system": LOINC, "code": "2345-7"}]},
        "valueQuantity": {"value": 5.4, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    }
    rows = extractor.extract(obs)
    q = of(rows, "value-quantity")
    assert q == [
        QuantityRow(
            "value-quantity", Decimal("5.4"), Decimal("5.4"), UCUM, "mg/dL", "mg/dL", "g/L",
            Decimal("0.054"), Decimal("0.054"),
        )
    ]  # fmt: skip
    cvq = of(rows, "code-value-quantity")
    assert len(cvq) == 1
    assert isinstance(cvq[0], CompositeRow)
    # Component rows carry the component parameter's code.
    assert cvq[0].components == (TokenRow("code", LOINC, "2345-7"), q[0])
    obs2 = {**obs, "valueCodeableConcept": {"coding": [{"system": "s", "code": "pos"}]}}
    del obs2["valueQuantity"]
    rows2 = extractor.extract(obs2)
    assert of(rows2, "value-quantity") == []
    assert TokenRow("value-concept", "s", "pos") in rows2
    assert len(of(rows2, "code-value-concept")) == 1


def test_number_and_range(extractor: Extractor) -> None:
    ra = {
        "resourceType": "RiskAssessment",
        "id": "r",
        "prediction": [{"probabilityDecimal": 0.25}, {"probabilityRange": {"low": {"value": 1}}}],
    }
    rows = extractor.extract(ra)
    assert set(of(rows, "probability")) == {
        NumberRow("probability", Decimal("0.25"), Decimal("0.25")),
        NumberRow("probability", Decimal(1), None),
    }


def test_boolean_token_and_fallback(extractor: Extractor) -> None:
    rows = extractor.extract(patient(active=True, deceasedDateTime="2020-01-01"))
    assert set(of(rows, "active")) == {TokenRow("active", None, "true")}
    assert set(of(rows, "deceased")) == {TokenRow("deceased", None, "true")}
    assert set(of(extractor.extract(patient(deceasedBoolean=False)), "deceased")) == {
        TokenRow("deceased", None, "false")
    }


def test_reference_identifier_and_contained(extractor: Extractor) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "subject": {"identifier": {"system": "urn:id", "value": "510703"}, "type": "Patient"},
        "performer": [{"reference": "#p1"}],
        "basedOn": [{"reference": "ServiceRequest/s1", "identifier": {"value": "X"}}],
    }
    rows = extractor.extract(obs)
    assert set(of(rows, "subject")) == {
        ReferenceRow("subject", "Patient", None, None, None, "urn:id", "510703")
    }
    assert of(rows, "performer") == []  # contained references are not indexed
    assert set(of(rows, "based-on")) == {
        ReferenceRow("based-on", "ServiceRequest", "s1", None, None, None, "X")
    }


def test_canonical_references_and_uris(extractor: Extractor) -> None:
    vs = {
        "resourceType": "ValueSet",
        "id": "v",
        "url": "http://hie.example.cn/ValueSet/x",
        "version": "2",
        "compose": {"include": [{"system": "http://loinc.org"}]},
    }
    rows = extractor.extract(vs)
    assert set(of(rows, "url")) == {UriRow("url", "http://hie.example.cn/ValueSet/x")}
    assert set(of(rows, "version")) == {TokenRow("version", None, "2")}
    assert set(of(rows, "reference")) == {UriRow("reference", "http://loinc.org")}
    cm = {
        "resourceType": "ConceptMap",
        "id": "m",
        "sourceCanonical": "http://hl7.org/fhir/ValueSet/a|4.0.1",
        "targetUri": "urn:oid:1.2.3",
    }
    rows = extractor.extract(cm)
    assert set(of(rows, "source")) == {
        ReferenceRow("source", None, None, "4.0.1", "http://hl7.org/fhir/ValueSet/a")
    }
    assert of(rows, "source-uri") == []
    assert set(of(rows, "target-uri")) == {
        ReferenceRow("target-uri", None, None, None, "urn:oid:1.2.3")
    }


def test_where_system_filter(extractor: Extractor) -> None:
    rows = extractor.extract(
        patient(telecom=[{"system": "email", "value": "a@b.cn"}, {"system": "phone", "value": "1"}])
    )
    assert set(of(rows, "email")) == {TokenRow("email", "email", "a@b.cn")}
    assert set(of(rows, "phone")) == {TokenRow("phone", "phone", "1")}


def test_garbage_never_raises(extractor: Extractor) -> None:
    weird: list[dict[str, Any]] = [
        {"resourceType": "Patient"},
        {"resourceType": "Unknown", "x": 1},
        {},
        patient(name="not a list", birthDate=12, telecom=[None, 3], identifier=[{"value": 5}]),
        {"resourceType": "Observation", "code": "x", "valueQuantity": {"value": "abc"},
         "component": [{"code": None}], "effectivePeriod": {"start": "bad"}},
    ]  # fmt: skip
    for r in weird:
        assert isinstance(extractor.extract(r), list)


@pytest.mark.parametrize("rtype", ["Consent", "AuditEvent", "Provenance", "Task", "Appointment"])
def test_served_types_have_plans(extractor: Extractor, rtype: str) -> None:
    assert extractor.extract({"resourceType": rtype, "id": "x"}) == []
