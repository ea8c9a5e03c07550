"""ORU^R01 -> DiagnosticReport per OBR, Observation per OBX, Specimen per SPM.

Keys: a report by its filler order number (OBR-3), else placer (OBR-2), else the message
and OBR-1; an observation by its report key, OBX-3 code and OBX-4 sub-id (a running count
tells apart repeats); a specimen by SPM-2, else report key and SPM-1.

Values by OBX-2: NM -> Quantity (UCUM where the unit is UCUM), ST/TX/FT -> string,
CWE/CE/CNE -> CodeableConcept, SN -> Quantity/Range/Ratio, DT/TS/DTM -> dateTime, TM -> time,
ED/RP -> the report's presentedForm; anything else -> its text. NTE after an OBX becomes
the observation's notes; NTE after OBR becomes the report's conclusion (R4's
DiagnosticReport has no notes).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from adapters.hl7v2 import timestamps
from adapters.hl7v2.message import Composite, Message, Segment
from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, MappingError, Resource
from adapters.hl7v2.to_fhir.datatypes import (
    concept,
    ei_identifier,
    is_number,
    number,
    practitioner,
    quantity,
    table_concept,
    unit_coding,
)
from adapters.hl7v2.to_fhir.patient import add_patient

_RANGE = re.compile(
    r"^\s*([+-]?\d+(?:\.\d+)?)\s*(?:-|\u2013|~|_|to|TO|\uff5e|\u2014)\s*([+-]?\d+(?:\.\d+)?)\s*$"
)
_BOUND = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([+-]?\d+(?:\.\d+)?)\s*$")
_ED_TYPES = {"AP": "application", "IM": "image", "TX": "text", "AU": "audio", "MU": "multipart"}


@dataclass
class ObxItem:
    obx: Segment
    notes: list[Segment] = field(default_factory=list)


@dataclass
class Group:
    """One OBR with what follows it up to the next OBR."""

    obr: Segment
    orc: Segment | None
    items: list[ObxItem] = field(default_factory=list)
    notes: list[Segment] = field(default_factory=list)
    specimens: list[Segment] = field(default_factory=list)


def groups(message: Message) -> list[Group]:
    out: list[Group] = []
    orc: Segment | None = None
    current: Group | None = None
    last: ObxItem | None = None
    for seg in message.segments:
        if seg.name == "ORC":
            orc, last = seg, None
        elif seg.name == "OBR":
            current, last = Group(seg, orc), None
            out.append(current)
            orc = None
        elif current is None:
            continue
        elif seg.name == "OBX":
            last = ObxItem(seg)
            current.items.append(last)
        elif seg.name == "NTE":
            (last.notes if last is not None else current.notes).append(seg)
        elif seg.name == "SPM":
            current.specimens.append(seg)
            last = None
    return out


def map_oru(ctx: Context) -> None:
    pid = ctx.message.first("PID")
    if pid is None:
        raise MappingError("PID", "required segment PID is missing")
    patient_url, _ = add_patient(ctx, pid)
    found = groups(ctx.message)
    if not found:
        raise MappingError("OBR", "required segment OBR is missing")
    for index, group in enumerate(found, start=1):
        add_report(ctx, group, patient_url, index)


def order_identifiers(ctx: Context, placer: Composite, filler: Composite) -> list[dict[str, Any]]:
    """Placer and filler order numbers as identifiers typed PLAC and FILL (filler first)."""
    out = []
    for ei, kind, code in ((filler, "filler", "FILL"), (placer, "placer", "PLAC")):
        ident = ei_identifier(ctx, ei, kind)
        if ident is not None:
            ident["type"] = {"coding": [{"system": codes.V2 + "0203", "code": code}]}
            out.append(ident)
    return out


def add_report(ctx: Context, group: Group, patient_url: str, index: int) -> str:
    obr = group.obr
    idents = order_identifiers(ctx, obr[2], obr[3])
    if idents:
        system, value = idents[0]["system"], idents[0]["value"]
    else:
        system = ctx.system("report-message")
        value = f"{ctx.message.control_id}/{obr[1][1] or index}"
    code = concept(ctx, obr[4], translate=True)
    if code is None:
        raise MappingError("OBR-4", "universal service identifier is required")
    report: Resource = {
        "resourceType": "DiagnosticReport",
        "identifier": idents,
        "status": codes.REPORT_STATUS.get(obr[25][1].upper(), "unknown"),
        "code": code,
        "subject": ctx.reference(patient_url),
    }
    category = table_concept("0074", obr[24][1])
    if category:
        report["category"] = [category]
    start, end = ctx.datetime(obr, 7), ctx.datetime(obr, 8)
    if start and end:
        report["effectivePeriod"] = {"start": start, "end": end}
    elif start:
        report["effectiveDateTime"] = start
    issued = ctx.instant(obr, 22)
    if issued:
        report["issued"] = issued
    placer = ei_identifier(ctx, obr[2], "placer")
    if placer is not None:
        report["basedOn"] = [{"type": "ServiceRequest", "identifier": placer}]
    conclusion = "\n".join(n.text for n in (nte[3] for nte in group.notes) if n.text)
    if conclusion:
        report["conclusion"] = conclusion
    specimen_urls = [
        add_specimen(ctx, spm, patient_url, value, i)
        for i, spm in enumerate(group.specimens, start=1)
    ]
    if specimen_urls:
        report["specimen"] = [ctx.reference(u) for u in specimen_urls]
    results: list[dict[str, str]] = []
    forms: list[Resource] = []
    seen: dict[str, int] = {}
    for item in group.items:
        value_type = item.obx[2][1].upper()
        if value_type in ("ED", "RP"):
            form = _attachment(item.obx, value_type)
            if form is not None:
                forms.append(form)
            continue
        obs_key = f"{value}/{item.obx[3][1]}/{item.obx[4][1]}"
        seen[obs_key] = seen.get(obs_key, 0) + 1
        if seen[obs_key] > 1:
            obs_key += f"/{seen[obs_key]}"
        url = add_observation(ctx, item, obr, patient_url, obs_key, specimen_urls)
        results.append(ctx.reference(url))
    if results:
        report["result"] = results
    if forms:
        report["presentedForm"] = forms
    return ctx.put(report, system, value)


def add_observation(
    ctx: Context,
    item: ObxItem,
    obr: Segment,
    patient_url: str,
    key: str,
    specimen_urls: list[str],
) -> str:
    obx = item.obx
    code = concept(ctx, obx[3], translate=True)
    if code is None:
        raise MappingError("OBX-3", "observation identifier is required")
    status = codes.OBSERVATION_STATUS.get(obx[11][1].upper())
    if status is None:
        report_status = codes.REPORT_STATUS.get(obr[25][1].upper(), "unknown")
        status = (
            report_status if report_status in ("final", "preliminary", "corrected") else "unknown"
        )
    observation: Resource = {
        "resourceType": "Observation",
        "status": status,
        "code": code,
        "subject": ctx.reference(patient_url),
    }
    category = table_concept("0074", obr[24][1])
    if category:
        observation["category"] = [category]
    observation.update(observation_value(ctx, obx))
    effective = ctx.datetime(obx, 14) or ctx.datetime(obr, 7)
    if effective:
        observation["effectiveDateTime"] = effective
    ranges = reference_range(obx[7].text, obx[6])
    if ranges:
        observation["referenceRange"] = [ranges]
    flags = [_interpretation(c) for c in obx.reps(8) if c[1]]
    if flags:
        observation["interpretation"] = flags
    method = concept(ctx, obx[17])
    if method:
        observation["method"] = method
    performers = [p for p in (practitioner(x) for x in obx.reps(16)) if p]
    if performers:
        observation["performer"] = performers
    notes = [{"text": nte[3].text} for nte in item.notes if nte[3].text]
    if notes:
        observation["note"] = notes
    if specimen_urls:
        observation["specimen"] = ctx.reference(specimen_urls[0])
    return ctx.put(observation, ctx.system("observation"), key)


def observation_value(ctx: Context, obx: Segment) -> Resource:
    """``value[x]`` for one OBX (empty when OBX-5 is empty)."""
    reps = obx.reps(5)
    if not reps:
        return {}
    kind = obx[2][1].upper()
    first = reps[0]
    where = f"OBX-5 ({kind})"
    if kind == "NM":
        text = first.text.strip()
        if not text:
            return {}
        return {"valueQuantity": quantity(text, obx[6], where)}
    if kind in ("ST", "TX", "FT"):
        text = "\n".join(r.text for r in reps)
        return {"valueString": text} if text.strip() else {}
    if kind in ("CE", "CWE", "CNE", "CF"):
        value = concept(ctx, first)
        return {"valueCodeableConcept": value} if value else {}
    if kind == "SN":
        return structured_numeric(first, obx[6], where)
    if kind in ("DT", "TS", "DTM"):
        raw = first[1]
        try:
            dt = timestamps.to_datetime(raw, ctx.offset)
        except timestamps.InvalidTimestamp as exc:
            raise MappingError("OBX-5", str(exc)) from None
        return {"valueDateTime": dt}
    if kind == "TM":
        raw = first[1].strip()
        match = re.match(r"^(\d{2})(\d{2})?(\d{2})?", raw)
        if not match:
            raise MappingError("OBX-5", f"{raw!r} is not a time")
        return {"valueTime": f"{match.group(1)}:{match.group(2) or '00'}:{match.group(3) or '00'}"}
    text = "\n".join(r.text for r in reps)
    return {"valueString": text} if text.strip() else {}


def structured_numeric(sn: Composite, unit: Composite, where: str) -> Resource:
    comparator, num1, sep, num2 = sn[1].strip(), sn[2].strip(), sn[3].strip(), sn[4].strip()
    if num1 and sep in ("-", "~") and num2:
        return {
            "valueRange": {
                "low": quantity(num1, unit, where),
                "high": quantity(num2, unit, where),
            }
        }
    if num1 and sep in (":", "/") and num2:
        return {
            "valueRatio": {
                "numerator": {"value": number(num1, where)},
                "denominator": {"value": number(num2, where)},
            }
        }
    if num1 and not sep:
        fhir_comparator = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "": "", "=": ""}.get(
            comparator
        )
        if fhir_comparator is None:
            raise MappingError(where, f"comparator {comparator!r} is not <, >, <= or >=")
        return {"valueQuantity": quantity(num1, unit, where, fhir_comparator)}
    text = "".join(x for x in (comparator, num1, sep, num2) if x)
    return {"valueString": text} if text else {}


def reference_range(text: str, unit: Composite) -> Resource | None:
    """OBX-7: ``13 to 18``, ``70-80``, ``70_105``, ``<5`` ... else kept as text."""
    text = text.strip()
    if not text:
        return None
    units = unit_coding(unit)
    match = _RANGE.match(text)
    if match:
        return {
            "low": {"value": number(match.group(1), "OBX-7"), **units},
            "high": {"value": number(match.group(2), "OBX-7"), **units},
        }
    match = _BOUND.match(text)
    if match and is_number(match.group(2)):
        bound = {"value": number(match.group(2), "OBX-7"), **units}
        return {"high": bound} if match.group(1) in ("<", "<=", "≤") else {"low": bound}
    return {"text": text}


def _interpretation(cwe: Composite) -> Resource:
    code = cwe[1].strip()
    out: Resource = {"coding": [{"system": codes.V3_INTERPRETATION, "code": code}]}
    if cwe[2]:
        out["text"] = cwe[2]
    return out


def _attachment(obx: Segment, kind: str) -> Resource | None:
    value = obx[5]
    if kind == "RP":
        pointer = value[1].strip()
        if not pointer:
            return None
        form: Resource = {"url": pointer}
        if value[3]:
            main = _ED_TYPES.get(value[3].upper(), value[3].lower())
            form["contentType"] = f"{main}/{value[4].lower()}" if value[4] else main
        return form
    main = _ED_TYPES.get(value[2].upper(), value[2].lower() or "application")
    content_type = f"{main}/{value[3].lower()}" if value[3] else "application/octet-stream"
    data = value[5]
    if not data:
        return None
    if value[4].upper() != "BASE64":
        data = base64.b64encode(data.encode("utf-8")).decode("ascii")
    return {"contentType": content_type, "data": data, "title": obx[3][2] or obx[3][1]}


def add_specimen(ctx: Context, spm: Segment, patient_url: str, report_key: str, index: int) -> str:
    specimen: Resource = {"resourceType": "Specimen", "subject": ctx.reference(patient_url)}
    kind = concept(ctx, spm[4])
    if kind:
        specimen["type"] = kind
    collected = ctx.datetime(spm, 17)
    if collected:
        specimen["collection"] = {"collectedDateTime": collected}
    received = ctx.datetime(spm, 18)
    if received:
        specimen["receivedTime"] = received
    own = spm[2].sub(2, 1) or spm[2].sub(1, 1)
    if own:
        return ctx.put(specimen, ctx.system("specimen"), own)
    return ctx.put(specimen, ctx.system("specimen-report"), f"{report_key}/{spm[1][1] or index}")
