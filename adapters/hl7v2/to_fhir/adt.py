"""ADT events -> Patient, Encounter, RelatedPerson, AllergyIntolerance, Condition, Coverage.

The Encounter is keyed by PV1-19 (visit number), else PV1-50 (alternate visit id), else
(MRN, admit time), else the message itself. Each event rewrites it from its PV1; the event
decides the status (A08 has no status of its own: finished when a discharge time was
sent, in progress when an admit time was, else unknown). A28/A31 carry person data only.
"""

from __future__ import annotations

from adapters.hl7v2.message import Message, Segment
from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, MappingError, Resource
from adapters.hl7v2.to_fhir.datatypes import (
    concept,
    ei_identifier,
    identifier,
    location_display,
    practitioner,
    table_concept,
)
from adapters.hl7v2.to_fhir.patient import add_merge, add_patient, add_related_persons

ENCOUNTER_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "planned",
    "A05": "planned",
    "A06": "in-progress",
    "A07": "in-progress",
    "A11": "cancelled",
    "A12": "in-progress",
    "A13": "in-progress",
}
PERSON_EVENTS = frozenset({"A28", "A31"})


def map_adt(ctx: Context) -> None:
    message = ctx.message
    event = message.trigger_event
    if event == "A40":
        add_merge(ctx, message)
        return
    pid = message.first("PID")
    if pid is None:
        raise MappingError("PID", "required segment PID is missing")
    patient_url, mrn = add_patient(ctx, pid)
    add_related_persons(ctx, message, patient_url, mrn)
    encounter_url = None
    pv1 = message.first("PV1")
    if event not in PERSON_EVENTS and pv1 is not None:
        encounter_url = add_encounter(ctx, pv1, patient_url, mrn, event)
    add_allergies(ctx, message, patient_url, mrn)
    add_conditions(ctx, message, patient_url, mrn, encounter_url)
    add_coverages(ctx, message, patient_url, mrn)


def _status(ctx: Context, pv1: Segment, event: str) -> str:
    if event in ENCOUNTER_STATUS:
        return ENCOUNTER_STATUS[event]
    if pv1.has(45):
        return "finished"
    if pv1.has(44):
        return "in-progress"
    return "unknown"


def add_encounter(ctx: Context, pv1: Segment, patient_url: str, mrn: str, event: str) -> str:
    patient_class = pv1[2][1].strip().upper()
    if not patient_class:
        raise MappingError("PV1-2", "patient class is required for an Encounter")
    act = codes.PATIENT_CLASS.get(patient_class)
    klass = (
        {"system": codes.V3_ACT, "code": act}
        if act
        else {"system": codes.V2 + "0004", "code": patient_class}
    )
    status = _status(ctx, pv1, event)
    encounter: Resource = {
        "resourceType": "Encounter",
        "status": status,
        "class": klass,
        "subject": ctx.reference(patient_url),
    }
    visit = identifier(ctx, pv1[19]) if pv1.has(19) else None
    alternate = identifier(ctx, pv1[50]) if pv1.has(50) else None
    if visit is not None:
        system, value = ctx.system("visit"), visit["value"]
    elif alternate is not None:
        system, value = ctx.system("visit-alternate"), alternate["value"]
    elif pv1.has(44):
        system, value = ctx.system("admission"), f"{mrn}/{pv1[44][1]}"
    else:
        system, value = ctx.system("encounter-message"), ctx.message.control_id
    encounter["identifier"] = [{"system": system, "value": value, "use": "official"}]
    kind = table_concept("0007", pv1[4][1], pv1[4][2])
    if kind:
        encounter["type"] = [kind]
    period: Resource = {}
    start = ctx.datetime(pv1, 44)
    if start:
        period["start"] = start
    end = ctx.datetime(pv1, 45)
    if end and status not in ("in-progress", "planned"):
        period["end"] = end
    elif status == "finished":
        evn = ctx.message.first("EVN")
        occurred = (ctx.datetime(evn, 6) or ctx.datetime(evn, 2)) if evn else None
        if occurred:
            period["end"] = occurred
    if period:
        encounter["period"] = period
    participants = []
    for n, role in ((7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM")):
        for xcn in pv1.reps(n):
            who = practitioner(xcn)
            if who is not None:
                participants.append(
                    {
                        "type": [{"coding": [{"system": codes.V3_PARTICIPATION, "code": role}]}],
                        "individual": who,
                    }
                )
    if participants:
        encounter["participant"] = participants
    locations = []
    prior = location_display(pv1[6])
    if prior and event == "A02":
        locations.append({"location": {"display": prior}, "status": "completed"})
    current = location_display(pv1[3])
    if current:
        locations.append(
            {
                "location": {"display": current},
                "status": "completed" if status == "finished" else "active",
            }
        )
    if locations:
        encounter["location"] = locations
    hospitalization: Resource = {}
    admit_source = table_concept("0023", pv1[14][1])
    if admit_source:
        hospitalization["admitSource"] = admit_source
    disposition = table_concept("0112", pv1[36][1])
    if disposition:
        hospitalization["dischargeDisposition"] = disposition
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    org = ctx.organization()
    if org:
        encounter["serviceProvider"] = org
    return ctx.put(encounter, system, value)


def add_allergies(ctx: Context, message: Message, patient_url: str, mrn: str) -> None:
    for al1 in message.all("AL1"):
        code = concept(ctx, al1[3])
        if code is None:
            continue
        allergy: Resource = {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": code,
            "patient": ctx.reference(patient_url),
        }
        category = codes.ALLERGY_CATEGORY.get(al1[2][1].upper())
        if category:
            allergy["category"] = [category]
        criticality = codes.ALLERGY_CRITICALITY.get(al1[4][1].upper())
        if criticality:
            allergy["criticality"] = criticality
        reactions = [r.text for r in al1.reps(5) if r.text]
        if reactions:
            allergy["reaction"] = [{"manifestation": [{"text": r} for r in reactions]}]
        recorded = ctx.datetime(al1, 6)
        if recorded:
            allergy["recordedDate"] = recorded
        key = al1[3][1] or al1[3][2]
        ctx.put(allergy, ctx.system("allergy"), f"{mrn}/{key}")


def add_conditions(
    ctx: Context, message: Message, patient_url: str, mrn: str, encounter_url: str | None
) -> None:
    for dg1 in message.all("DG1"):
        code = concept(ctx, dg1[3])
        if code is None and dg1[4].text:
            code = {"text": dg1[4].text}
        if code is None:
            continue
        condition: Resource = {
            "resourceType": "Condition",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "encounter-diagnosis",
                        }
                    ]
                }
            ],
            "code": code,
            "subject": ctx.reference(patient_url),
        }
        if encounter_url:
            condition["encounter"] = ctx.reference(encounter_url)
        recorded = ctx.datetime(dg1, 5)
        if recorded:
            condition["recordedDate"] = recorded
        kind = dg1[6][1].upper()
        if kind == "F":
            condition["verificationStatus"] = _verification("confirmed")
        elif kind in ("A", "W"):
            condition["verificationStatus"] = _verification("provisional")
        own = ei_identifier(ctx, dg1[20], "diagnosis") if dg1.has(20) else None
        if own is not None:
            ctx.put(condition, own["system"], own["value"])
        else:
            key = dg1[3][1] or dg1[3][2] or dg1[4].text
            visit = ctx.identifier_of(encounter_url) if encounter_url else ""
            ctx.put(condition, ctx.system("diagnosis"), f"{mrn}/{visit}/{key}")


def _verification(code: str) -> Resource:
    return {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": code,
            }
        ]
    }


def add_coverages(ctx: Context, message: Message, patient_url: str, mrn: str) -> None:
    for in1 in message.all("IN1"):
        company = in1[4].text or in1[3][1]
        if not company and not in1[2][1]:
            continue
        coverage: Resource = {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": ctx.reference(patient_url),
            "payor": [_payor(ctx, in1)],
        }
        plan = concept(ctx, in1[2])
        if plan is not None:
            coverage["class"] = [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                "code": "plan",
                            }
                        ]
                    },
                    "value": in1[2][1] or plan.get("text", "plan"),
                    **({"name": plan["text"]} if plan.get("text") else {}),
                }
            ]
        relationship = codes.SUBSCRIBER_RELATIONSHIP.get(in1[17][1].upper())
        if relationship:
            coverage["relationship"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                        "code": relationship,
                    }
                ]
            }
        period: Resource = {}
        start, end = ctx.date(in1, 12), ctx.date(in1, 13)
        if start:
            period["start"] = start
        if end:
            period["end"] = end
        if period:
            coverage["period"] = period
        policy = in1[36][1].strip()
        if policy:
            coverage["subscriberId"] = policy
        key = f"{mrn}/{in1[3][1] or company}/{policy or in1[2][1]}"
        ctx.put(coverage, ctx.system("coverage"), key)


def _payor(ctx: Context, in1: Segment) -> Resource:
    out: Resource = {"type": "Organization"}
    name = in1[4].text
    if name:
        out["display"] = name
    company = identifier(ctx, in1[3])
    if company is not None:
        out["identifier"] = company
    if len(out) == 1:
        out["display"] = in1[2][1]
    return out
