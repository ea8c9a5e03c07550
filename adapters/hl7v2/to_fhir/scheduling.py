"""SIU^S12..S15 -> Appointment, keyed by the filler appointment id (SCH-2), else placer (SCH-1).

Status: SCH-25 filler status when sent, else booked (S12 new, S13 rescheduled, S14
modified); S15 is always cancelled. Start and end come from SCH-11 (TQ), else TQ1-7/8,
else the AIS/AIG/AIL/AIP start with its duration.
"""

from __future__ import annotations

from datetime import timedelta

from adapters.hl7v2 import timestamps
from adapters.hl7v2.message import Segment
from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, MappingError, Resource
from adapters.hl7v2.to_fhir.datatypes import concept, ei_identifier, location_display, practitioner
from adapters.hl7v2.to_fhir.patient import add_patient

_UNIT_MINUTES = {"MIN": 1, "M": 1, "S": 1 / 60, "H": 60, "HR": 60, "D": 1440}
_STARTS = (("AIS", 4, 7, 8), ("AIG", 8, 11, 12), ("AIL", 6, 9, 10), ("AIP", 6, 9, 10))


def map_appointment(ctx: Context) -> None:
    message = ctx.message
    sch = message.first("SCH")
    if sch is None:
        raise MappingError("SCH", "required segment SCH is missing")
    pid = message.first("PID")
    if pid is None:
        raise MappingError("PID", "required segment PID is missing")
    patient_url, _ = add_patient(ctx, pid)
    idents = []
    for n, kind in ((2, "appointment-filler"), (1, "appointment-placer")):
        ident = ei_identifier(ctx, sch[n], kind)
        if ident is not None:
            idents.append(ident)
    if not idents:
        raise MappingError("SCH-1", "no placer (SCH-1) or filler (SCH-2) appointment id")
    event = message.trigger_event
    status = codes.APPOINTMENT_STATUS.get(sch[25][1].upper().replace(" ", ""), "booked")
    if event == "S15":
        status = "cancelled"
    appointment: Resource = {
        "resourceType": "Appointment",
        "identifier": idents,
        "status": status,
        "participant": [
            {"actor": ctx.reference(patient_url), "status": "accepted", "required": "required"}
        ],
    }
    start, end = _times(ctx, sch)
    if start and end:
        appointment["start"], appointment["end"] = start, end
    elif status not in ("proposed", "cancelled", "waitlist"):
        raise MappingError(
            "SCH-11",
            "appointment start and end cannot be determined (SCH-11.4/5, TQ1-7/8, AIS-4 + AIS-7)",
        )
    reason = concept(ctx, sch[7])
    if reason:
        appointment["reasonCode"] = [reason]
        if reason.get("text"):
            appointment["description"] = reason["text"]
    appointment_type = concept(ctx, sch[8])
    if appointment_type:
        appointment["appointmentType"] = appointment_type
    ais = message.first("AIS")
    if ais is not None:
        service = concept(ctx, ais[3])
        if service:
            appointment["serviceType"] = [service]
    for seg in message.all("AIP"):
        for xcn in seg.reps(3):
            who = practitioner(xcn)
            if who:
                appointment["participant"].append(
                    {"actor": who, "status": "accepted", "required": "required"}
                )
    for seg in message.all("AIL"):
        where = location_display(seg[3])
        if where:
            appointment["participant"].append(
                {"actor": {"type": "Location", "display": where}, "status": "accepted"}
            )
    comments = [n[3].text for n in message.all("NTE") if n[3].text]
    if comments:
        appointment["comment"] = "\n".join(comments)
    created = ctx.datetime(sch, 11, 8) if sch.has(11) else None
    if created and len(created) > 10:
        appointment["created"] = created[:10]
    ctx.put(appointment, idents[0]["system"], idents[0]["value"])


def _times(ctx: Context, sch: Segment) -> tuple[str | None, str | None]:
    start, end = ctx.datetime(sch, 11, 4), ctx.datetime(sch, 11, 5)
    if start and end:
        return start, end
    tq1 = ctx.message.first("TQ1")
    if tq1 is not None:
        start, end = ctx.datetime(tq1, 7), ctx.datetime(tq1, 8)
        if start and end:
            return start, end
    for name, at, duration, units in _STARTS:
        seg = ctx.message.first(name)
        if seg is None or not seg.has(at):
            continue
        minutes = _minutes(seg[duration][1], seg[units][1])
        if minutes is None:
            minutes = _minutes(sch[9][1], sch[10][1])
        if minutes is None:
            continue
        raw = seg[at][1]
        try:
            begin = timestamps.to_aware(raw, ctx.offset)
        except timestamps.InvalidTimestamp as exc:
            raise MappingError(f"{name}-{at}", str(exc)) from None
        finish = begin + timedelta(minutes=minutes)
        return begin.isoformat(), finish.isoformat()
    return None, None


def _minutes(amount: str, unit: str) -> float | None:
    if not amount.strip():
        return None
    try:
        value = float(amount)
    except ValueError:
        return None
    factor = _UNIT_MINUTES.get(unit.strip().upper() or "MIN")
    return value * factor if factor is not None else None
