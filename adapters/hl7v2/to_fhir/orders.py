"""ORM^O01 and OML^O21 -> ServiceRequest per order (ORC with its OBR), Specimen per SPM.

A ServiceRequest carries the placer (ORC-2, else OBR-2) and filler (ORC-3, else OBR-3)
order numbers as identifiers typed PLAC and FILL, and is keyed by the placer number (the
order's identity from the ordering system), else the filler's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.hl7v2.message import Segment
from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, MappingError, Resource
from adapters.hl7v2.to_fhir.datatypes import concept, ei_identifier, practitioner
from adapters.hl7v2.to_fhir.oru import add_specimen, order_identifiers
from adapters.hl7v2.to_fhir.patient import add_patient


@dataclass
class Order:
    orc: Segment
    obr: Segment | None = None
    tq1: Segment | None = None
    notes: list[Segment] = field(default_factory=list)
    specimens: list[Segment] = field(default_factory=list)


def orders(ctx: Context) -> list[Order]:
    out: list[Order] = []
    current: Order | None = None
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            current = Order(seg)
            out.append(current)
        elif current is None:
            continue
        elif seg.name == "OBR" and current.obr is None:
            current.obr = seg
        elif seg.name == "OBR":
            # An OBR without its own ORC repeats the order's common data.
            current = Order(current.orc, seg)
            out.append(current)
        elif seg.name == "TQ1" and current.tq1 is None:
            current.tq1 = seg
        elif seg.name == "NTE":
            current.notes.append(seg)
        elif seg.name == "SPM":
            current.specimens.append(seg)
    return out


def map_orders(ctx: Context) -> None:
    pid = ctx.message.first("PID")
    if pid is None:
        raise MappingError("PID", "required segment PID is missing")
    patient_url, _ = add_patient(ctx, pid)
    found = orders(ctx)
    if not found:
        raise MappingError("ORC", "required segment ORC is missing")
    for index, order in enumerate(found, start=1):
        add_service_request(ctx, order, patient_url, index)


def add_service_request(ctx: Context, order: Order, patient_url: str, index: int) -> str:
    orc, obr = order.orc, order.obr
    placer = orc[2] if orc.has(2) or obr is None else obr[2]
    filler = orc[3] if orc.has(3) or obr is None else obr[3]
    idents = order_identifiers(ctx, placer, filler)
    placer_ident = ei_identifier(ctx, placer, "placer")
    if placer_ident is not None:
        system, value = placer_ident["system"], placer_ident["value"]
        idents.sort(key=lambda i: i["value"] != value)
    elif idents:
        system, value = idents[0]["system"], idents[0]["value"]
    else:
        system = ctx.system("order-message")
        value = f"{ctx.message.control_id}/{index}"
    status = codes.ORDER_STATUS.get(orc[5][1].upper()) or codes.ORDER_CONTROL_STATUS.get(
        orc[1][1].upper(), "active"
    )
    request: Resource = {
        "resourceType": "ServiceRequest",
        "identifier": idents,
        "status": status,
        "intent": "order",
        "subject": ctx.reference(patient_url),
    }
    if obr is not None:
        code = concept(ctx, obr[4], translate=True)
        if code is not None:
            request["code"] = code
    authored = ctx.datetime(orc, 9)
    if authored:
        request["authoredOn"] = authored
    requester = practitioner(orc[12]) or (practitioner(obr[16]) if obr is not None else None)
    if requester:
        request["requester"] = requester
    priority = ""
    if order.tq1 is not None:
        priority = order.tq1[9][1]
        start = ctx.datetime(order.tq1, 7)
        end = ctx.datetime(order.tq1, 8)
        if start and end:
            request["occurrencePeriod"] = {"start": start, "end": end}
        elif start:
            request["occurrenceDateTime"] = start
    priority = priority or orc[7][6]
    if priority.upper() in codes.PRIORITY:
        request["priority"] = codes.PRIORITY[priority.upper()]
    notes = [{"text": n[3].text} for n in order.notes if n[3].text]
    if notes:
        request["note"] = notes
    specimens = [
        add_specimen(ctx, spm, patient_url, value, i)
        for i, spm in enumerate(order.specimens, start=1)
    ]
    if specimens:
        request["specimen"] = [ctx.reference(u) for u in specimens]
    return ctx.put(request, system, value)
