"""Every parameter type, modifier and prefix against expectations read from the JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from tests.hie.search.conformance.conftest import Server
from tests.hie.search.conformance.oracle import (
    Corpus,
    Resource,
    codings,
    date_matches,
    date_range,
    effective,
    has_code,
    identifiers,
    local,
    norm,
    number_matches,
    period_range,
    person_names,
    refers_to,
    starts,
    values,
)

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
RID = "urn:oid:2.16.156.10011.1.1"
TRENT = "2fda17e1-68f5-4450-bb37-775162f27530"
ELENORE = "dab4861f-04d5-4a05-8bfc-7e188353feac"


@dataclass(frozen=True)
class Case:
    query: str
    expect: Callable[[Corpus], set[str]]

    @property
    def type(self) -> str:
        return self.query.split("?", 1)[0]


def where(rtype: str, test: Callable[[Resource], bool]) -> Callable[[Corpus], set[str]]:
    return lambda corpus: corpus.ids(rtype, test)


names = person_names


def quantities(r: Resource, key: str = "valueQuantity") -> list[dict[str, Any]]:
    return [q for q in values(r, key) if "value" in q]


def qty(r: Resource, pred: Callable[[Decimal, dict[str, Any]], bool]) -> bool:
    return any(pred(Decimal(str(q["value"])), q) for q in quantities(r))


def obs_dates(r: Resource) -> list[Any]:
    return effective(r)


def any_date(r: Resource, prefix: str, q: str) -> bool:
    return any(date_matches(t, prefix, q) for t in obs_dates(r))


def birth(r: Resource, prefix: str, q: str) -> bool:
    return "birthDate" in r and date_matches(date_range(r["birthDate"]), prefix, q)


GRAMS = {
    "g": Decimal(1),
    "mg": Decimal("0.001"),
    "kg": Decimal(1000),
    "ug": Decimal("1e-6"),
    "ng": Decimal("1e-9"),
    "pg": Decimal("1e-12"),
}


def _age(r: Resource, test: Callable[[Decimal, Decimal], bool]) -> bool:
    """Condition.onset as an Age or a Range of ages in years (UCUM ``a``)."""
    if r.get("onsetAge", {}).get("code") == "a":
        v = Decimal(str(r["onsetAge"]["value"]))
        return test(v, v)
    rng = r.get("onsetRange")
    if rng and rng.get("low", {}).get("code") == "a":
        return test(Decimal(str(rng["low"]["value"])), Decimal(str(rng["high"]["value"])))
    return False


def probabilities(r: Resource) -> list[tuple[Decimal | None, Decimal | None]]:
    out: list[tuple[Decimal | None, Decimal | None]] = []
    for p in r.get("prediction", []):
        if "probabilityDecimal" in p:
            v = Decimal(str(p["probabilityDecimal"]))
            out.append((v, v))
        elif "probabilityRange" in p:
            rng = p["probabilityRange"]
            lo = rng.get("low", {}).get("value")
            hi = rng.get("high", {}).get("value")
            out.append(
                (None if lo is None else Decimal(str(lo)), None if hi is None else Decimal(str(hi)))
            )
    return out


def point_probability(r: Resource, prefix: str, q: str) -> bool:
    return any(
        lo == hi and lo is not None and number_matches(lo, prefix, q) for lo, hi in probabilities(r)
    )


STRING = [
    Case("Patient?name=trent", where("Patient", lambda r: starts(names(r), "trent"))),
    Case("Patient?name=TRENT525", where("Patient", lambda r: starts(names(r), "trent525"))),
    Case(
        "Patient?family=ondri",
        where("Patient", lambda r: starts(values(r, "name", "family"), "ondri")),
    ),
    Case(
        "Patient?given=Eleno",
        where("Patient", lambda r: starts(values(r, "name", "given"), "eleno")),
    ),
    Case("Patient?name:exact=Trent525", where("Patient", lambda r: "Trent525" in names(r))),
    Case("Patient?name:exact=trent525", where("Patient", lambda r: "trent525" in names(r))),
    Case(
        "Patient?name:contains=acob",
        where("Patient", lambda r: any("acob" in norm(n) for n in names(r))),
    ),
    Case(
        "Patient?name=trent,napoleon",
        where("Patient", lambda r: starts(names(r), "trent") or starts(names(r), "napoleon")),
    ),
    Case(
        "Patient?name=elenore&name=wolf",
        where("Patient", lambda r: starts(names(r), "elenore") and starts(names(r), "wolf")),
    ),
    Case("Patient?name=张", where("Patient", lambda r: starts(names(r), "张"))),
    Case("Patient?name=张三", where("Patient", lambda r: starts(names(r), "张三"))),
    Case("Patient?name:exact=张伟", where("Patient", lambda r: "张伟" in names(r))),
    Case("Patient?given=伟", where("Patient", lambda r: "伟" in values(r, "name", "given"))),
    Case("Patient?name:contains=伟", where("Patient", lambda r: any("伟" in n for n in names(r)))),
    Case("Patient?family=章", where("Patient", lambda r: "章" in values(r, "name", "family"))),
    Case("Patient?name=renee", where("Patient", lambda r: starts(names(r), "renee"))),
    Case(
        "Patient?family=DUBE",
        where("Patient", lambda r: starts(values(r, "name", "family"), "dube")),
    ),
    Case("Patient?name:exact=Renée", where("Patient", lambda r: "Renée" in names(r))),
    Case("Patient?name:missing=true", where("Patient", lambda r: not names(r))),
    Case("Patient?name:missing=false", where("Patient", lambda r: bool(names(r)))),
    Case(
        "Patient?address-city=绵阳",
        where("Patient", lambda r: "绵阳" in values(r, "address", "city")),
    ),
    Case(
        "Patient?address-city=fall",
        where("Patient", lambda r: starts(values(r, "address", "city"), "fall")),
    ),
    Case(
        "Patient?address=临园",
        where("Patient", lambda r: starts(values(r, "address", "line"), "临园")),
    ),
    Case(
        "Patient?address-state=MA",
        where("Patient", lambda r: starts(values(r, "address", "state"), "ma")),
    ),
    Case(
        "Organization?name=绵阳市",
        where("Organization", lambda r: starts([r.get("name", ""), *r.get("alias", [])], "绵阳市")),
    ),
    Case(
        "Organization?name=mianyang",
        where(
            "Organization", lambda r: starts([r.get("name", ""), *r.get("alias", [])], "mianyang")
        ),
    ),
    Case(
        "Organization?name=st vincent",
        where("Organization", lambda r: starts([r.get("name", "")], "st vincent")),
    ),
    Case("Practitioner?name=dr.", where("Practitioner", lambda r: starts(names(r), "dr."))),
    Case(
        "Practitioner?family=李",
        where("Practitioner", lambda r: "李" in values(r, "name", "family")),
    ),
    Case("ValueSet?name=blood", where("ValueSet", lambda r: starts([r.get("name", "")], "blood"))),
    Case("Patient?name=zzz-nobody", lambda c: set()),
]

TOKEN = [
    Case("Patient?gender=male", where("Patient", lambda r: r.get("gender") == "male")),
    Case(
        "Patient?gender=female,other",
        where("Patient", lambda r: r.get("gender") in ("female", "other")),
    ),
    Case("Patient?gender:not=male", where("Patient", lambda r: r.get("gender") != "male")),
    Case("Patient?gender:missing=true", where("Patient", lambda r: "gender" not in r)),
    Case("Observation?code=8867-4", where("Observation", lambda r: has_code(r, "8867-4", "code"))),
    Case(
        f"Observation?code={LOINC}|8867-4",
        where("Observation", lambda r: has_code(r, "8867-4", "code", system=LOINC)),
    ),
    Case(
        "Observation?code=|8867-4",
        where("Observation", lambda r: has_code(r, "8867-4", "code", system=None)),
    ),
    Case(
        "Observation?code=http://loinc|85353-1",
        where("Observation", lambda r: has_code(r, "85353-1", "code", system="http://loinc")),
    ),
    Case(
        f"Observation?code={LOINC}|",
        where("Observation", lambda r: has_code(r, None, "code", system=LOINC)),
    ),
    Case(
        f"Observation?code={LOINC}|8867-4,{LOINC}|9279-1",
        where(
            "Observation",
            lambda r: (
                has_code(r, "8867-4", "code", system=LOINC)
                or has_code(r, "9279-1", "code", system=LOINC)
            ),
        ),
    ),
    Case(
        "Observation?code=8867-4&code=9279-1",
        where(
            "Observation", lambda r: has_code(r, "8867-4", "code") and has_code(r, "9279-1", "code")
        ),
    ),
    Case(
        "Observation?code:not=8867-4&category=vital-signs",
        where(
            "Observation",
            lambda r: not has_code(r, "8867-4", "code") and has_code(r, "vital-signs", "category"),
        ),
    ),
    Case(
        "Observation?code:text=heart",
        where(
            "Observation",
            lambda r: any(
                norm(t).startswith("heart") or " heart" in norm(t)
                for t in [*values(r, "code", "text"), *values(r, "code", "coding", "display")]
            ),
        ),
    ),
    Case(
        "Observation?code:text=rate",
        where(
            "Observation",
            lambda r: any(
                norm(t).startswith("rate") or " rate" in norm(t)
                for t in [*values(r, "code", "text"), *values(r, "code", "coding", "display")]
            ),
        ),
    ),
    Case(
        "Observation?code:text=自述",
        where(
            "Observation", lambda r: any(t.startswith("自述") for t in values(r, "code", "text"))
        ),
    ),
    Case("Observation?code:missing=true", where("Observation", lambda r: "code" not in r)),
    Case(
        "Observation?value-concept=266919005",
        where("Observation", lambda r: has_code(r, "266919005", "valueCodeableConcept")),
    ),
    Case(
        "Observation?value-concept:text=never",
        where(
            "Observation",
            lambda r: any(
                norm(t).startswith("never")
                for t in [
                    *values(r, "valueCodeableConcept", "text"),
                    *values(r, "valueCodeableConcept", "coding", "display"),
                ]
            ),
        ),
    ),
    Case(
        "Observation?status=preliminary",
        where("Observation", lambda r: r.get("status") == "preliminary"),
    ),
    Case(
        "Observation?category=vital-signs&status=final",
        where(
            "Observation",
            lambda r: has_code(r, "vital-signs", "category") and r.get("status") == "final",
        ),
    ),
    Case(
        "Condition?clinical-status=active",
        where("Condition", lambda r: has_code(r, "active", "clinicalStatus")),
    ),
    Case(
        f"Condition?code={SNOMED}|38341003",
        where("Condition", lambda r: has_code(r, "38341003", "code", system=SNOMED)),
    ),
    Case(
        "Encounter?class=AMB", where("Encounter", lambda r: r.get("class", {}).get("code") == "AMB")
    ),
    Case(
        "Immunization?vaccine-code=140",
        where("Immunization", lambda r: has_code(r, "140", "vaccineCode")),
    ),
    Case(
        "MedicationRequest?status=active",
        where("MedicationRequest", lambda r: r.get("status") == "active"),
    ),
    Case(
        "MedicationRequest?intent=order&status:not=active",
        where(
            "MedicationRequest",
            lambda r: r.get("intent") == "order" and r.get("status") != "active",
        ),
    ),
    Case(
        f"Patient?identifier={RID}|510703198503150011",
        where("Patient", lambda r: (RID, "510703198503150011") in identifiers(r)),
    ),
    Case(
        "Patient?identifier=510703198503150027",
        where("Patient", lambda r: any(v == "510703198503150027" for _, v in identifiers(r))),
    ),
    Case(
        "Patient?identifier=|no-system-1",
        where("Patient", lambda r: (None, "no-system-1") in identifiers(r)),
    ),
    Case(
        f"Patient?identifier={RID}|",
        where("Patient", lambda r: any(s == RID for s, _ in identifiers(r))),
    ),
    Case(
        "Patient?identifier=http://hl7.org/fhir/sid/us-ssn|",
        where(
            "Patient",
            lambda r: any(s == "http://hl7.org/fhir/sid/us-ssn" for s, _ in identifiers(r)),
        ),
    ),
    Case(
        "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NI|510703198503150011",
        where(
            "Patient",
            lambda r: any(
                ("NI" in [c.get("code") for c in i.get("type", {}).get("coding", [])])
                and i["value"] == "510703198503150011"
                for i in r.get("identifier", [])
            ),
        ),
    ),
    Case(
        "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|x",
        lambda c: set(),
    ),
    Case(
        "Patient?identifier:text=身份",
        where(
            "Patient",
            lambda r: any(
                i.get("type", {}).get("text", "").startswith("身份")
                for i in r.get("identifier", [])
            ),
        ),
    ),
    Case(
        "Patient?phone=13800000001",
        where(
            "Patient",
            lambda r: any(
                t.get("value") == "13800000001" and t.get("system") == "phone"
                for t in r.get("telecom", [])
            ),
        ),
    ),
    Case(
        "Patient?telecom=phone|555-220-4750",
        where(
            "Patient",
            lambda r: any(
                t.get("value") == "555-220-4750" and t.get("system") == "phone"
                for t in r.get("telecom", [])
            ),
        ),
    ),
    Case(f"Patient?_id={TRENT},cn1", lambda c: {TRENT, "cn1"}),
    Case(
        "Patient?_id:not=cn1&family=张",
        where("Patient", lambda r: r["id"] != "cn1" and "张" in values(r, "name", "family")),
    ),
    Case(
        "Patient?_tag=urn:hie:tag|edge",
        where(
            "Patient",
            lambda r: any(t.get("code") == "edge" for t in r.get("meta", {}).get("tag", [])),
        ),
    ),
    Case(
        "Patient?_security=R",
        where(
            "Patient",
            lambda r: any(t.get("code") == "R" for t in r.get("meta", {}).get("security", [])),
        ),
    ),
    Case(
        "Patient?deceased=true",
        where("Patient", lambda r: "deceasedDateTime" in r or r.get("deceasedBoolean") is True),
    ),
    Case("Group?actual=true", where("Group", lambda r: r.get("actual") is True)),
    Case(
        "DocumentReference?status=current",
        where("DocumentReference", lambda r: r.get("status") == "current"),
    ),
    Case("Observation?code=no-such-code", lambda c: set()),
]

DATE = [
    Case("Patient?birthdate=1985", where("Patient", lambda r: birth(r, "eq", "1985"))),
    Case("Patient?birthdate=1985-03", where("Patient", lambda r: birth(r, "eq", "1985-03"))),
    Case("Patient?birthdate=1985-03-15", where("Patient", lambda r: birth(r, "eq", "1985-03-15"))),
    Case("Patient?birthdate=ne1985-03", where("Patient", lambda r: birth(r, "ne", "1985-03"))),
    Case(
        "Patient?birthdate=gt1985-03-15", where("Patient", lambda r: birth(r, "gt", "1985-03-15"))
    ),
    Case(
        "Patient?birthdate=ge1985-03-15", where("Patient", lambda r: birth(r, "ge", "1985-03-15"))
    ),
    Case(
        "Patient?birthdate=lt1985-03-15", where("Patient", lambda r: birth(r, "lt", "1985-03-15"))
    ),
    Case(
        "Patient?birthdate=le1985-03-15", where("Patient", lambda r: birth(r, "le", "1985-03-15"))
    ),
    Case("Patient?birthdate=sa1985", where("Patient", lambda r: birth(r, "sa", "1985"))),
    Case(
        "Patient?birthdate=eb1985-03-15", where("Patient", lambda r: birth(r, "eb", "1985-03-15"))
    ),
    Case(
        "Patient?birthdate=ge1940&birthdate=lt1980",
        where("Patient", lambda r: birth(r, "ge", "1940") and birth(r, "lt", "1980")),
    ),
    Case(
        "Patient?birthdate=1994,2003",
        where("Patient", lambda r: birth(r, "eq", "1994") or birth(r, "eq", "2003")),
    ),
    Case(
        "Patient?birthdate=2001-12-31T23:00:00+08:00",
        where("Patient", lambda r: birth(r, "eq", "2001-12-31T23:00:00+08:00")),
    ),
    Case("Patient?birthdate:missing=true", where("Patient", lambda r: "birthDate" not in r)),
    Case(
        "Patient?death-date=2023-04",
        where(
            "Patient",
            lambda r: (
                "deceasedDateTime" in r
                and date_matches(date_range(r["deceasedDateTime"]), "eq", "2023-04")
            ),
        ),
    ),
    Case("Observation?date=2024-01", where("Observation", lambda r: any_date(r, "eq", "2024-01"))),
    Case(
        "Observation?date=2024-01-15",
        where("Observation", lambda r: any_date(r, "eq", "2024-01-15")),
    ),
    Case(
        "Observation?date=ge2024-01-15&date=le2024-01-20",
        where(
            "Observation",
            lambda r: any_date(r, "ge", "2024-01-15") and any_date(r, "le", "2024-01-20"),
        ),
    ),
    Case(
        "Observation?date=sa2023-12-31",
        where("Observation", lambda r: any_date(r, "sa", "2023-12-31")),
    ),
    Case("Observation?date=eb2000", where("Observation", lambda r: any_date(r, "eb", "2000"))),
    Case(
        "Observation?date=gt2024-05-01",
        where("Observation", lambda r: any_date(r, "gt", "2024-05-01")),
    ),
    Case(
        "Observation?date=2024-05-06T10:30:15+08:00",
        where("Observation", lambda r: any_date(r, "eq", "2024-05-06T10:30:15+08:00")),
    ),
    Case(
        "Observation?date=2024-05-06T02:30:15.123Z",
        where("Observation", lambda r: any_date(r, "eq", "2024-05-06T02:30:15.123Z")),
    ),
    Case(
        "Observation?date=2024-05-06T10:30",
        where("Observation", lambda r: any_date(r, "eq", "2024-05-06T10:30")),
    ),
    Case(
        "Observation?date=2024-05-06",
        where("Observation", lambda r: any_date(r, "eq", "2024-05-06")),
    ),
    Case(
        "Observation?date=2024-05-06T02:30:15Z",
        where("Observation", lambda r: any_date(r, "eq", "2024-05-06T02:30:15Z")),
    ),
    Case(
        "Observation?date=ne2024-01", where("Observation", lambda r: any_date(r, "ne", "2024-01"))
    ),
    Case("Observation?date=lt1990", where("Observation", lambda r: any_date(r, "lt", "1990"))),
    Case("Observation?date=ge2030", where("Observation", lambda r: any_date(r, "ge", "2030"))),
    Case("Observation?date:missing=true", where("Observation", lambda r: not obs_dates(r))),
    Case(
        "Encounter?date=2024-05-06",
        where(
            "Encounter",
            lambda r: "period" in r and date_matches(period_range(r["period"]), "eq", "2024-05-06"),
        ),
    ),
    Case(
        "Encounter?date=ge2015&date=lt2016",
        where(
            "Encounter",
            lambda r: (
                "period" in r
                and date_matches(period_range(r["period"]), "ge", "2015")
                and date_matches(period_range(r["period"]), "lt", "2016")
            ),
        ),
    ),
    Case(
        "Encounter?date=1995-12-09",
        where(
            "Encounter",
            lambda r: "period" in r and date_matches(period_range(r["period"]), "eq", "1995-12-09"),
        ),
    ),
    Case(
        "Condition?onset-date=2019",
        where(
            "Condition", lambda r: any(date_matches(t, "eq", "2019") for t in effective(r, "onset"))
        ),
    ),
    Case(
        "Condition?onset-date=ge2019-07",
        where(
            "Condition",
            lambda r: any(date_matches(t, "ge", "2019-07") for t in effective(r, "onset")),
        ),
    ),
    Case(
        "Condition?recorded-date=2020-01-02",
        where(
            "Condition",
            lambda r: (
                "recordedDate" in r
                and date_matches(date_range(r["recordedDate"]), "eq", "2020-01-02")
            ),
        ),
    ),
    Case(
        "Procedure?date=2010",
        where(
            "Procedure",
            lambda r: any(date_matches(t, "eq", "2010") for t in effective(r, "performed")),
        ),
    ),
    Case(
        "Immunization?date=le2010-08-29",
        where(
            "Immunization",
            lambda r: any(date_matches(t, "le", "2010-08-29") for t in effective(r, "occurrence")),
        ),
    ),
    Case(
        "MedicationRequest?authoredon=ge2019",
        where(
            "MedicationRequest",
            lambda r: "authoredOn" in r and date_matches(date_range(r["authoredOn"]), "ge", "2019"),
        ),
    ),
]


def _ra(prefix: str, q: str) -> Case:
    return Case(
        f"RiskAssessment?probability={prefix}{q}",
        where(
            "RiskAssessment",
            lambda r: point_probability(r, prefix or "eq", q) or _range_prob(r, prefix or "eq", q),
        ),
    )


def _range_prob(r: Resource, prefix: str, q: str) -> bool:
    """A Range against a number: eq needs the range inside the precision; gt/lt overlap."""
    value = Decimal(q)
    exp = value.as_tuple().exponent
    assert isinstance(exp, int)
    half = Decimal((0, (5,), exp - 1))
    for lo, hi in probabilities(r):
        if lo == hi:
            continue
        low = lo if lo is not None else Decimal("-1e30")
        high = hi if hi is not None else Decimal("1e30")
        if prefix == "eq" and low >= value - half and high < value + half:
            return True
        if prefix == "gt" and high > value:
            return True
        if prefix == "lt" and low < value:
            return True
        if prefix == "ge" and (high > value or (low >= value - half and high < value + half)):
            return True
        if prefix == "le" and (low < value or (low >= value - half and high < value + half)):
            return True
        if prefix == "ne" and not (low >= value - half and high < value + half):
            return True
    return False


NUMBER = [
    _ra("", "0.25"),
    _ra("", "0.3"),
    _ra("", "0.30"),
    _ra("", "100"),
    _ra("", "1e2"),
    _ra("gt", "0.25"),
    _ra("ge", "0.25"),
    _ra("lt", "0.3"),
    _ra("le", "0.3"),
    _ra("ne", "0.25"),
    _ra("lt", "0.15"),
    _ra("gt", "0.15"),
    Case(
        "RiskAssessment?probability:missing=false",
        where("RiskAssessment", lambda r: bool(probabilities(r))),
    ),
]

QUANTITY = [
    Case(
        "Observation?value-quantity=gt100",
        where("Observation", lambda r: qty(r, lambda v, q: v > 100)),
    ),
    Case(
        "Observation?value-quantity=le50",
        where("Observation", lambda r: qty(r, lambda v, q: v <= 50)),
    ),
    Case(
        "Observation?value-quantity=72",
        where("Observation", lambda r: qty(r, lambda v, q: Decimal("71.5") <= v < Decimal("72.5"))),
    ),
    Case(
        "Observation?value-quantity=72.0",
        where(
            "Observation", lambda r: qty(r, lambda v, q: Decimal("71.95") <= v < Decimal("72.05"))
        ),
    ),
    Case(
        f"Observation?value-quantity=gt100|{UCUM}|/min",
        where(
            "Observation",
            lambda r: qty(
                r, lambda v, q: v > 100 and q.get("system") == UCUM and q.get("code") == "/min"
            ),
        ),
    ),
    Case(f"Observation?value-quantity=5.4|{UCUM}|mg", lambda c: {"mass-mg", "mass-g"}),
    Case(f"Observation?value-quantity=0.0054|{UCUM}|g", lambda c: {"mass-mg", "mass-g"}),
    Case(
        f"Observation?value-quantity=lt1|{UCUM}|g",
        where(
            "Observation",
            lambda r: qty(
                r,
                lambda v, q: (
                    q.get("system") == UCUM and q.get("code") in GRAMS and v * GRAMS[q["code"]] < 1
                ),
            ),
        ),
    ),
    Case(
        "Observation?value-quantity=5.4||mg",
        where(
            "Observation",
            lambda r: qty(
                r,
                lambda v, q: (
                    Decimal("5.35") <= v < Decimal("5.45")
                    and (q.get("code") == "mg" or q.get("unit") == "mg")
                ),
            ),
        ),
    ),
    Case(
        f"Observation?value-quantity=gt170|{UCUM}|cm",
        where(
            "Observation",
            lambda r: qty(
                r, lambda v, q: v > 170 and q.get("code") == "cm" and q.get("system") == UCUM
            ),
        ),
    ),
    Case(
        f"Observation?value-quantity=gt1.7|{UCUM}|m",
        where(
            "Observation",
            lambda r: qty(
                r, lambda v, q: v > 170 and q.get("code") == "cm" and q.get("system") == UCUM
            ),
        ),
    ),
    Case(
        f"Condition?onset-age=gt35|{UCUM}|a",
        where("Condition", lambda r: _age(r, lambda lo, hi: hi > 35)),
    ),
    Case(
        f"Condition?onset-age=lt31|{UCUM}|a",
        where("Condition", lambda r: _age(r, lambda lo, hi: lo < 31)),
    ),
    Case(
        f"Condition?onset-age=35|{UCUM}|a",
        where(
            "Condition",
            lambda r: _age(r, lambda lo, hi: lo >= Decimal("34.5") and hi < Decimal("35.5")),
        ),
    ),
    Case(
        f"Condition?onset-age=ge40|{UCUM}|a",
        where(
            "Condition",
            lambda r: _age(
                r, lambda lo, hi: hi > 40 or (lo >= Decimal("39.5") and hi < Decimal("40.5"))
            ),
        ),
    ),
    Case(
        f"Encounter?length=2|{UCUM}|h",
        where(
            "Encounter",
            lambda r: (
                r.get("length", {}).get("code") == "min"
                and Decimal("90") <= Decimal(str(r["length"]["value"])) < Decimal("150")
            ),
        ),
    ),
    Case(
        "Observation?value-quantity:missing=true&code=8867-4",
        where("Observation", lambda r: has_code(r, "8867-4", "code") and not quantities(r)),
    ),
]

REFERENCE = [
    Case(
        f"Observation?subject=Patient/{TRENT}",
        where("Observation", lambda r: refers_to(r, f"Patient/{TRENT}", "subject")),
    ),
    Case(
        f"Observation?subject={TRENT}",
        where("Observation", lambda r: refers_to(r, f"Patient/{TRENT}", "subject")),
    ),
    Case(
        f"Observation?patient={TRENT}",
        where("Observation", lambda r: refers_to(r, f"Patient/{TRENT}", "subject")),
    ),
    Case(
        f"Observation?subject:Patient={TRENT}",
        where("Observation", lambda r: refers_to(r, f"Patient/{TRENT}", "subject")),
    ),
    Case(
        "Observation?subject=Patient/cn2",
        where("Observation", lambda r: refers_to(r, "Patient/cn2", "subject")),
    ),
    Case(
        "Observation?subject=https://hie.example.cn/fhir/Patient/cn2",
        where("Observation", lambda r: refers_to(r, "Patient/cn2", "subject")),
    ),
    Case("Observation?subject=https://other.example.org/fhir/Patient/9", lambda c: {"foreign"}),
    Case(f"Observation?subject:identifier={RID}|510703198503150011", lambda c: {"by-identifier"}),
    Case("Observation?subject:missing=true", where("Observation", lambda r: "subject" not in r)),
    Case(
        f"Observation?subject=Patient/{TRENT},Patient/cn1",
        where(
            "Observation",
            lambda r: (
                refers_to(r, f"Patient/{TRENT}", "subject")
                or refers_to(r, "Patient/cn1", "subject")
            ),
        ),
    ),
    Case(
        f"Observation?subject=Patient/{TRENT}&code=8867-4",
        where(
            "Observation",
            lambda r: refers_to(r, f"Patient/{TRENT}", "subject") and has_code(r, "8867-4", "code"),
        ),
    ),
    Case(
        f"Encounter?patient={ELENORE}",
        where("Encounter", lambda r: refers_to(r, f"Patient/{ELENORE}", "subject")),
    ),
    Case(
        "Encounter?service-provider=Organization/edge-org",
        where("Encounter", lambda r: refers_to(r, "Organization/edge-org", "serviceProvider")),
    ),
    Case(
        "Encounter?practitioner=edge-pr",
        where(
            "Encounter", lambda r: refers_to(r, "Practitioner/edge-pr", "participant", "individual")
        ),
    ),
    Case(
        "Condition?encounter=Encounter/enc-edge",
        where("Condition", lambda r: refers_to(r, "Encounter/enc-edge", "encounter")),
    ),
    Case(
        "Patient?organization=edge-org",
        where("Patient", lambda r: refers_to(r, "Organization/edge-org", "managingOrganization")),
    ),
    Case(
        "Patient?general-practitioner=Practitioner/edge-pr",
        where("Patient", lambda r: refers_to(r, "Practitioner/edge-pr", "generalPractitioner")),
    ),
    Case(
        "Patient?link=cn1", where("Patient", lambda r: refers_to(r, "Patient/cn1", "link", "other"))
    ),
    Case(
        "Group?member=Patient/cn1",
        where("Group", lambda r: refers_to(r, "Patient/cn1", "member", "entity")),
    ),
    Case(
        "QuestionnaireResponse?questionnaire=http://hie.example.cn/Questionnaire/phq9",
        lambda c: {"qr1"},
    ),
    Case("DocumentReference?relatesto=DocumentReference/doc-old", lambda c: {"doc-new"}),
    Case(
        "MedicationRequest?requester:missing=false",
        where("MedicationRequest", lambda r: "requester" in r),
    ),
]

URI = [
    Case("ValueSet?url=http://hie.example.cn/fhir/ValueSet/blood-pressure", lambda c: {"vs-bp"}),
    Case(
        "ValueSet?url:below=http://hie.example.cn/fhir/ValueSet/blood-pressure",
        lambda c: {"vs-bp", "vs-bp-adult"},
    ),
    Case(
        "ValueSet?url:below=http://hie.example.cn/fhir/",
        lambda c: {"vs-bp", "vs-bp-adult", "vs-other"},
    ),
    Case(
        "ValueSet?url:above=http://hie.example.cn/fhir/ValueSet/blood-pressure/adult/v2",
        lambda c: {"vs-bp", "vs-bp-adult"},
    ),
    Case("ValueSet?url:above=http://hie.example.cn/fhir/ValueSet/other", lambda c: {"vs-other"}),
    Case(
        "ValueSet?url:missing=false&status=active",
        where("ValueSet", lambda r: "url" in r and r.get("status") == "active"),
    ),
    Case("Patient?_profile=http://hie.example.cn/StructureDefinition/patient", lambda c: {"cn1"}),
    Case(
        "Observation?_profile=http://hl7.org/fhir/StructureDefinition/bodyheight",
        where(
            "Observation",
            lambda r: (
                "http://hl7.org/fhir/StructureDefinition/bodyheight"
                in r.get("meta", {}).get("profile", [])
            ),
        ),
    ),
    Case("Patient?_source=urn:hie:source:edge", lambda c: {"cn1"}),
]


def _components(r: Resource) -> list[Resource]:
    return r.get("component", [])


COMPOSITE = [
    Case(
        f"Observation?code-value-quantity={LOINC}|8867-4$gt100",
        where(
            "Observation",
            lambda r: has_code(r, "8867-4", "code", system=LOINC) and qty(r, lambda v, q: v > 100),
        ),
    ),
    Case(
        "Observation?code-value-quantity=8867-4$72",
        where(
            "Observation",
            lambda r: (
                has_code(r, "8867-4", "code")
                and qty(r, lambda v, q: Decimal("71.5") <= v < Decimal("72.5"))
            ),
        ),
    ),
    Case(
        f"Observation?component-code-value-quantity={LOINC}|8480-6$gt140",
        where(
            "Observation",
            lambda r: any(
                has_code(c, "8480-6", "code") and qty(c, lambda v, q: v > 140)
                for c in _components(r)
            ),
        ),
    ),
    Case(
        f"Observation?component-code-value-quantity={LOINC}|8462-4$ge90",
        where(
            "Observation",
            lambda r: any(
                has_code(c, "8462-4", "code") and qty(c, lambda v, q: v >= 90)
                for c in _components(r)
            ),
        ),
    ),
    Case(
        "Observation?component-code-value-quantity=8480-6$95",
        where(
            "Observation",
            lambda r: any(
                has_code(c, "8480-6", "code")
                and qty(c, lambda v, q: Decimal("94.5") <= v < Decimal("95.5"))
                for c in _components(r)
            ),
        ),
    ),
    Case(
        "Observation?combo-code-value-quantity=8480-6$gt140",
        where(
            "Observation",
            lambda r: any(
                has_code(c, "8480-6", "code") and qty(c, lambda v, q: v > 140)
                for c in [r, *_components(r)]
            ),
        ),
    ),
    Case(
        f"Observation?code-value-concept=72166-2${SNOMED}|266919005",
        where(
            "Observation",
            lambda r: (
                has_code(r, "72166-2", "code")
                and has_code(r, "266919005", "valueCodeableConcept", system=SNOMED)
            ),
        ),
    ),
    Case(
        "Observation?code-value-string=8302-2$血压",
        where(
            "Observation",
            lambda r: has_code(r, "8302-2", "code") and r.get("valueString", "").startswith("血压"),
        ),
    ),
    Case(
        "Observation?code-value-date=21112-8$1985-03",
        where(
            "Observation",
            lambda r: (
                has_code(r, "21112-8", "code")
                and "valueDateTime" in r
                and date_matches(date_range(r["valueDateTime"]), "eq", "1985-03")
            ),
        ),
    ),
    Case(
        "DocumentReference?relationship=DocumentReference/doc-old$replaces", lambda c: {"doc-new"}
    ),
    Case(
        "Observation?code-value-quantity=8867-4$gt100,9279-1$gt20",
        where(
            "Observation",
            lambda r: (
                (has_code(r, "8867-4", "code") and qty(r, lambda v, q: v > 100))
                or (has_code(r, "9279-1", "code") and qty(r, lambda v, q: v > 20))
            ),
        ),
    ),
]

COMMON = [
    Case("Observation?_lastUpdated=ge2000-01-01", lambda c: c.ids("Observation")),
    Case("Observation?_lastUpdated=lt2000-01-01", lambda c: set()),
    Case("Patient?_id=cn1&_lastUpdated=ge2000", lambda c: {"cn1"}),
    Case(
        "Patient?_tag:not=urn:hie:tag|edge",
        where(
            "Patient",
            lambda r: not any(t.get("code") == "edge" for t in r.get("meta", {}).get("tag", [])),
        ),
    ),
]

ALL = STRING + TOKEN + DATE + NUMBER + QUANTITY + REFERENCE + URI + COMPOSITE + COMMON


@pytest.mark.parametrize("case", ALL, ids=[c.query for c in ALL])
def test_parameter(case: Case, server: Server, corpus: Corpus) -> None:
    expected = case.expect(corpus)
    got = server.ids(case.query + "&_count=500")
    assert got == expected


def test_cases_are_not_trivial(corpus: Corpus) -> None:
    """Most cases select a proper, non-empty subset, so they can tell right from wrong."""
    sizes = [(len(c.expect(corpus)), len(corpus.of(c.type))) for c in ALL]
    empty = sum(1 for n, _ in sizes if n == 0)
    everything = sum(1 for n, total in sizes if n == total)
    assert len(ALL) >= 150
    assert empty <= len(ALL) // 8
    assert everything <= len(ALL) // 10


def test_codings_helper_sees_components(corpus: Corpus) -> None:
    bp = corpus.get("Observation", "bp-high")
    assert bp is not None
    assert ("http://loinc.org", "8480-6") in [
        x for c in bp["component"] for x in codings(c, "code")
    ]
    assert local("https://hie.example.cn/fhir/Patient/x") == "Patient/x"
