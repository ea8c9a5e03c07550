"""One Provenance per message: the sender, the control id and the message time.

It is created once: ``POST`` with ``ifNoneExist: _source=<message uri>`` (``meta.source``
of the Provenance is the message's URI, unique per sender and control id), so a replayed
message does not record its provenance twice.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, Resource


def add_provenance(ctx: Context, received_at: datetime | None = None) -> str | None:
    targets = [ctx.reference(e.full_url) for e in ctx.entries]
    if not targets:
        return None
    message = ctx.message
    recorded = ctx.instant(message.msh, 7)
    if recorded is None:
        recorded = (received_at or datetime.now().astimezone()).isoformat()
    agent_who: Resource = ctx.organization() or {"display": ctx.sender.label}
    provenance: Resource = {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": recorded,
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": agent_who,
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": ctx.system("message"), "value": message.control_id},
                    "display": f"HL7 v2 {message.message_type} {message.control_id}",
                },
            }
        ],
    }
    if message.trigger_event:
        provenance["activity"] = {
            "coding": [{"system": codes.V2 + "0003", "code": message.trigger_event}]
        }
    return ctx.post_once(provenance, f"_source={quote(ctx.source, safe='')}")
