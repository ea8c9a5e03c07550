"""Hand-made resources for the cases the Synthea data does not reach.

Chinese names (Hanzi that share a pinyin), accents, month and year precision, periods
open at one end, instants with fractions, UCUM unit conversions, composites on
components, references by identifier and by absolute URL, canonical references,
URIs for :below/:above, numbers with ranges, security labels, tags and profiles.
"""

from __future__ import annotations

from typing import Any

LOCAL = "https://hie.example.cn/fhir"
RID = "urn:oid:2.16.156.10011.1.1"  # resident identity card numbers
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
VITAL = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}


def _obs(id_: str, subject: str | dict[str, Any], code: str, **extra: Any) -> dict[str, Any]:
    subj = subject if isinstance(subject, dict) else {"reference": subject}
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "category": [VITAL],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": subj,
        **extra,
    }


def resources() -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Organization",
            "id": "edge-org",
            "identifier": [{"system": "urn:oid:2.16.156.10011.1.5", "value": "MY-0001"}],
            "name": "绵阳市中心医院",
            "alias": ["Mianyang Central Hospital"],
            "address": [{"city": "绵阳", "district": "涪城区", "country": "CN"}],
        },
        {
            "resourceType": "Practitioner",
            "id": "edge-pr",
            "name": [{"family": "李", "given": ["明"]}],
            "identifier": [{"system": "urn:oid:2.16.156.10011.1.4", "value": "D-77"}],
        },
        {
            "resourceType": "Patient",
            "id": "cn1",
            "meta": {
                "tag": [{"system": "urn:hie:tag", "code": "edge"}],
                "security": [{"system": CONF, "code": "R"}],
                "source": "urn:hie:source:edge",
                "profile": ["http://hie.example.cn/StructureDefinition/patient"],
            },
            "identifier": [
                {
                    "type": {"coding": [{"system": V2_0203, "code": "NI"}], "text": "身份证"},
                    "system": RID,
                    "value": "510703198503150011",
                },
                {"value": "no-system-1"},
            ],
            "name": [{"family": "张", "given": ["三"]}],
            "gender": "male",
            "birthDate": "1985-03",
            "telecom": [{"system": "phone", "value": "13800000001"}],
            "address": [{"city": "绵阳", "district": "涪城区", "line": ["临园路东段"]}],
            "managingOrganization": {"reference": "Organization/edge-org"},
            "generalPractitioner": [{"reference": "Practitioner/edge-pr"}],
        },
        {
            "resourceType": "Patient",
            "id": "cn2",
            "meta": {"tag": [{"system": "urn:hie:tag", "code": "edge"}]},
            "identifier": [{"system": RID, "value": "510703198503150027"}],
            "name": [{"family": "张", "given": ["伟"]}],
            "gender": "female",
            "birthDate": "1985-03-15",
            "managingOrganization": {"reference": "Organization/edge-org"},
        },
        {
            "resourceType": "Patient",
            "id": "cn3",
            "name": [{"family": "章", "given": ["伟"]}],
            "gender": "male",
            "birthDate": "1985",
            "link": [{"other": {"reference": "Patient/cn1"}, "type": "seealso"}],
        },
        {
            "resourceType": "Patient",
            "id": "renee",
            "name": [{"family": "Dubé", "given": ["Renée"], "prefix": ["Mme"]}],
            "gender": "female",
            "birthDate": "2001-12-31",
            "deceasedDateTime": "2023-04-01T08:00:00+08:00",
        },
        _obs(
            "bp-high",
            "Patient/cn1",
            "85354-9",
            effectiveDateTime="2024-05-06T10:30:00+08:00",
            component=[
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": {
                        "value": 150,
                        "unit": "mmHg",
                        "system": UCUM,
                        "code": "mm[Hg]",
                    },
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                    "valueQuantity": {
                        "value": 95,
                        "unit": "mmHg",
                        "system": UCUM,
                        "code": "mm[Hg]",
                    },
                },
            ],
        ),
        _obs(
            "mass-mg",
            "Patient/cn1",
            "2339-0",
            effectiveDateTime="2024-05-06",
            valueQuantity={"value": 5.4, "unit": "mg", "system": UCUM, "code": "mg"},
        ),
        _obs(
            "mass-g",
            "Patient/cn2",
            "2339-0",
            effectiveDateTime="2024-05-07",
            valueQuantity={"value": 0.0054, "unit": "g", "system": UCUM, "code": "g"},
        ),
        _obs(
            "mass-unitless",
            "Patient/cn2",
            "2339-0",
            effectiveDateTime="2024-05-08",
            valueQuantity={"value": 5.4, "unit": "mg"},
        ),
        _obs(
            "in-january",
            "Patient/cn2",
            "8867-4",
            effectivePeriod={"start": "2024-01-01", "end": "2024-01-31"},
            valueQuantity={"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
        ),
        _obs(
            "open-period",
            "Patient/cn2",
            "8867-4",
            effectivePeriod={"start": "2023-06-01T00:00:00+08:00"},
        ),
        _obs(
            "instant",
            "Patient/cn1",
            "8867-4",
            effectiveInstant="2024-05-06T02:30:15.123Z",
            valueQuantity={"value": 101, "unit": "/min", "system": UCUM, "code": "/min"},
        ),
        _obs(
            "chinese-string",
            "Patient/cn1",
            "8302-2",
            effectiveDateTime="2024-02-29",
            valueString="血压偏高，建议复查",  # noqa: RUF001 (Chinese punctuation)
        ),
        _obs(
            "text-only",
            "Patient/cn1",
            "8302-2",
            effectiveDateTime="2024-03-01",
            valueCodeableConcept={"text": "自述头痛"},
        ),
        {
            "resourceType": "Observation",
            "id": "text-code",
            "status": "preliminary",
            "code": {"text": "自述头痛 三天"},
            "subject": {"reference": "Patient/cn1"},
        },
        _obs(
            "by-identifier",
            {"identifier": {"system": RID, "value": "510703198503150011"}},
            "8867-4",
            effectiveDateTime="2024-05-09",
        ),
        _obs(
            "absolute-local",
            f"{LOCAL}/Patient/cn2",
            "8867-4",
            effectiveDateTime="2024-05-10",
        ),
        _obs(
            "foreign",
            "https://other.example.org/fhir/Patient/9",
            "8867-4",
            effectiveDateTime="2024-05-11",
        ),
        _obs(
            "range-value",
            "Patient/cn2",
            "2339-0",
            effectiveDateTime="2024-05-12",
            valueRange={
                "low": {"value": 3, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
                "high": {"value": 7, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
            },
        ),
        _obs(
            "concept-value",
            "Patient/cn2",
            "72166-2",
            effectiveDateTime="2024-05-13",
            valueCodeableConcept={
                "coding": [{"system": "http://snomed.info/sct", "code": "266919005"}],
                "text": "Never smoked",
            },
        ),
        _obs(
            "date-value",
            "Patient/cn2",
            "21112-8",
            effectiveDateTime="2024-05-14",
            valueDateTime="1985-03-15",
        ),
        {
            "resourceType": "RiskAssessment",
            "id": "ra-quarter",
            "status": "final",
            "subject": {"reference": "Patient/cn1"},
            "prediction": [{"probabilityDecimal": 0.25}],
        },
        {
            "resourceType": "RiskAssessment",
            "id": "ra-third",
            "status": "final",
            "subject": {"reference": "Patient/cn1"},
            "prediction": [{"probabilityDecimal": 0.3}],
        },
        {
            "resourceType": "RiskAssessment",
            "id": "ra-hundred",
            "status": "final",
            "subject": {"reference": "Patient/cn2"},
            "prediction": [{"probabilityDecimal": 100}],
        },
        {
            "resourceType": "RiskAssessment",
            "id": "ra-range",
            "status": "final",
            "subject": {"reference": "Patient/cn2"},
            "prediction": [{"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.2}}}],
        },
        {
            "resourceType": "ValueSet",
            "id": "vs-bp",
            "url": "http://hie.example.cn/fhir/ValueSet/blood-pressure",
            "version": "1.0",
            "name": "BloodPressure",
            "status": "active",
        },
        {
            "resourceType": "ValueSet",
            "id": "vs-bp-adult",
            "url": "http://hie.example.cn/fhir/ValueSet/blood-pressure/adult",
            "name": "BloodPressureAdult",
            "status": "draft",
        },
        {
            "resourceType": "ValueSet",
            "id": "vs-other",
            "url": "http://hie.example.cn/fhir/ValueSet/other",
            "name": "Other",
            "status": "active",
        },
        {
            "resourceType": "Questionnaire",
            "id": "phq9",
            "url": "http://hie.example.cn/Questionnaire/phq9",
            "version": "1.0",
            "status": "active",
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr1",
            "questionnaire": "http://hie.example.cn/Questionnaire/phq9|1.0",
            "status": "completed",
            "subject": {"reference": "Patient/cn1"},
            "authored": "2024-05-06T10:00:00+08:00",
        },
        {
            "resourceType": "Encounter",
            "id": "enc-edge",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
            },
            "subject": {"reference": "Patient/cn1"},
            "period": {"start": "2024-05-06T09:00:00+08:00", "end": "2024-05-06T11:00:00+08:00"},
            "length": {"value": 120, "unit": "min", "system": UCUM, "code": "min"},
            "serviceProvider": {"reference": "Organization/edge-org"},
            "participant": [{"individual": {"reference": "Practitioner/edge-pr"}}],
        },
        {
            "resourceType": "Condition",
            "id": "cond-edge",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": "38341003"}],
                "text": "高血压",
            },
            "subject": {"reference": "Patient/cn1"},
            "encounter": {"reference": "Encounter/enc-edge"},
            "onsetPeriod": {"start": "2019-07"},
            "recordedDate": "2020-01-02",
        },
        {
            "resourceType": "Condition",
            "id": "cond-range",
            "code": {"text": "糖尿病"},
            "subject": {"reference": "Patient/cn2"},
            "onsetRange": {
                "low": {"value": 30, "unit": "a", "system": UCUM, "code": "a"},
                "high": {"value": 40, "unit": "a", "system": UCUM, "code": "a"},
            },
        },
        {
            "resourceType": "Condition",
            "id": "cond-age",
            "code": {"text": "哮喘"},
            "subject": {"reference": "Patient/cn3"},
            "onsetAge": {"value": 35, "unit": "a", "system": UCUM, "code": "a"},
        },
        {
            "resourceType": "DocumentReference",
            "id": "doc-old",
            "status": "superseded",
            "subject": {"reference": "Patient/cn1"},
            "content": [{"attachment": {"contentType": "text/plain", "title": "门诊病历"}}],
        },
        {
            "resourceType": "DocumentReference",
            "id": "doc-new",
            "status": "current",
            "subject": {"reference": "Patient/cn1"},
            "relatesTo": [
                {"code": "replaces", "target": {"reference": "DocumentReference/doc-old"}}
            ],
            "content": [{"attachment": {"contentType": "text/plain", "title": "门诊病历（修订）"}}],  # noqa: RUF001
        },
        {
            "resourceType": "Group",
            "id": "grp",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/cn1"}}],
        },
    ]
