"""MDM^T02 -> DocumentReference, keyed by TXA-12 (unique document number).

Content: the OBX text lines (TX/ST/FT) joined into one UTF-8 text attachment, and one
attachment per ED (encapsulated data, base64 kept as sent).
"""

from __future__ import annotations

import base64

from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, MappingError, Resource
from adapters.hl7v2.to_fhir.datatypes import ei_identifier, practitioner, table_concept
from adapters.hl7v2.to_fhir.oru import _ED_TYPES
from adapters.hl7v2.to_fhir.patient import add_patient

_AVAILABILITY = {"AV": "current", "UN": "current", "CA": "entered-in-error", "OB": "superseded"}


def map_document(ctx: Context) -> None:
    message = ctx.message
    txa = message.first("TXA")
    pid = message.first("PID")
    if txa is None or pid is None:
        raise MappingError("TXA" if txa is None else "PID", "required segment is missing")
    patient_url, mrn = add_patient(ctx, pid)
    lines: list[str] = []
    content: list[Resource] = []
    for obx in message.all("OBX"):
        kind = obx[2][1].upper()
        if kind in ("TX", "ST", "FT"):
            lines.extend(r.text for r in obx.reps(5))
        elif kind == "ED":
            ed = obx[5]
            main = _ED_TYPES.get(ed[2].upper(), ed[2].lower() or "application")
            attachment: Resource = {
                "contentType": f"{main}/{ed[3].lower()}" if ed[3] else "application/octet-stream"
            }
            data = ed[5]
            if data:
                attachment["data"] = (
                    data
                    if ed[4].upper() == "BASE64"
                    else base64.b64encode(data.encode("utf-8")).decode("ascii")
                )
            content.append({"attachment": attachment})
    if lines:
        text = "\n".join(lines)
        content.insert(
            0,
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                }
            },
        )
    if not content:
        raise MappingError("OBX-5", "the document has no content (no TX/ST/FT/ED OBX)")
    status = _AVAILABILITY.get(txa[19][1].upper(), "current")
    document: Resource = {
        "resourceType": "DocumentReference",
        "status": status,
        "subject": ctx.reference(patient_url),
        "content": content,
    }
    unique = ei_identifier(ctx, txa[12], "document")
    if unique is not None:
        document["masterIdentifier"] = dict(unique)
        system, value = unique["system"], unique["value"]
    else:
        system, value = ctx.system("document-message"), f"{mrn}/{ctx.message.control_id}"
    doc_type = table_concept("0270", txa[2][1], txa[2][2])
    if doc_type:
        document["type"] = doc_type
    doc_status = codes.DOC_STATUS.get(txa[17][1].upper())
    if doc_status:
        document["docStatus"] = doc_status
    when = ctx.instant(txa, 4) or ctx.instant(txa, 6) or ctx.instant(message.msh, 7)
    if when:
        document["date"] = when
    authors = [a for a in (practitioner(x) for x in txa.reps(9)) if a]
    if authors:
        document["author"] = authors
    authenticator = practitioner(txa[10])
    if authenticator:
        document["authenticator"] = authenticator
    org = ctx.organization()
    if org:
        document["custodian"] = org
    ctx.put(document, system, value)
