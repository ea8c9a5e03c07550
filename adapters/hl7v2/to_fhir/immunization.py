"""VXU^V04 -> Immunization per RXA.

Keyed by the filler order number (ORC-3), else the placer's (ORC-2), else (MRN, RXA-3
administration time, RXA-5 vaccine code). RXA-21 action code D marks entered-in-error.
"""

from __future__ import annotations

from adapters.hl7v2.message import Segment
from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, MappingError, Resource
from adapters.hl7v2.to_fhir.datatypes import (
    concept,
    ei_identifier,
    number,
    practitioner,
    unit_coding,
)
from adapters.hl7v2.to_fhir.patient import add_patient


def map_immunizations(ctx: Context) -> None:
    message = ctx.message
    pid = message.first("PID")
    if pid is None:
        raise MappingError("PID", "required segment PID is missing")
    patient_url, mrn = add_patient(ctx, pid)
    orc: Segment | None = None
    found = False
    segments = message.segments
    for i, seg in enumerate(segments):
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "RXA":
            rxr = next((s for s in segments[i + 1 :] if s.name in ("RXR", "RXA", "ORC")), None)
            add_immunization(
                ctx, seg, orc, rxr if rxr and rxr.name == "RXR" else None, patient_url, mrn
            )
            found = True
            orc = None
    if not found:
        raise MappingError("RXA", "required segment RXA is missing")


def add_immunization(
    ctx: Context,
    rxa: Segment,
    orc: Segment | None,
    rxr: Segment | None,
    patient_url: str,
    mrn: str,
) -> str:
    vaccine = concept(ctx, rxa[5])
    if vaccine is None:
        raise MappingError("RXA-5", "administered code is required")
    when = ctx.datetime(rxa, 3)
    if when is None:
        raise MappingError("RXA-3", "date/time start of administration is required")
    status = codes.IMMUNIZATION_STATUS.get(rxa[20][1].upper(), "completed")
    if rxa[21][1].upper() == "D":
        status = "entered-in-error"
    immunization: Resource = {
        "resourceType": "Immunization",
        "status": status,
        "vaccineCode": vaccine,
        "patient": ctx.reference(patient_url),
        "occurrenceDateTime": when,
    }
    source = rxa[9][1]
    if source in ("00", "01"):
        immunization["primarySource"] = source == "00"
    lot = rxa[15][1].strip()
    if lot:
        immunization["lotNumber"] = lot
    expires = ctx.date(rxa, 16)
    if expires:
        immunization["expirationDate"] = expires
    maker = concept(ctx, rxa[17])
    if maker:
        immunization["manufacturer"] = {
            "type": "Organization",
            "display": maker.get("text") or rxa[17][1],
        }
    dose = rxa[6][1].strip()
    if dose and dose != "999":
        immunization["doseQuantity"] = {"value": number(dose, "RXA-6"), **unit_coding(rxa[7])}
    performers = [p for p in (practitioner(x) for x in rxa.reps(10)) if p]
    if performers:
        immunization["performer"] = [
            {
                "function": {"coding": [{"system": codes.V2 + "0443", "code": "AP"}]},
                "actor": p,
            }
            for p in performers
        ]
    if status == "not-done":
        reason = concept(ctx, rxa[18])
        if reason:
            immunization["statusReason"] = reason
    if rxr is not None:
        route = concept(ctx, rxr[1])
        if route:
            immunization["route"] = route
        site = concept(ctx, rxr[2])
        if site:
            immunization["site"] = site
    ident = None
    if orc is not None:
        ident = ei_identifier(ctx, orc[3], "immunization-filler") or ei_identifier(
            ctx, orc[2], "immunization-placer"
        )
    if ident is not None:
        return ctx.put(immunization, ident["system"], ident["value"])
    return ctx.put(immunization, ctx.system("immunization"), f"{mrn}/{rxa[3][1]}/{rxa[5][1]}")
