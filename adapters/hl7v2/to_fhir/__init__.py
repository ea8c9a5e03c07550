"""HL7 v2 messages to FHIR R4 transaction Bundles, one module per message family.

Follows the HL7 v2-to-FHIR IG 1.0 where it has a map; the A03 discharge and A40 merge
choices are documented in docs/hl7v2.md. Every mapped message becomes one transaction
(all or nothing) whose writes are idempotent, plus a Provenance of the message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from adapters.hl7v2.checks import profile_for
from adapters.hl7v2.message import Message
from adapters.hl7v2.senders import Sender
from adapters.hl7v2.to_fhir.adt import map_adt
from adapters.hl7v2.to_fhir.context import Context, MappingError
from adapters.hl7v2.to_fhir.documents import map_document
from adapters.hl7v2.to_fhir.immunization import map_immunizations
from adapters.hl7v2.to_fhir.orders import map_orders
from adapters.hl7v2.to_fhir.oru import map_oru
from adapters.hl7v2.to_fhir.provenance import add_provenance
from adapters.hl7v2.to_fhir.scheduling import map_appointment
from terminology.conceptmaps import ConceptMaps

__all__ = ["MAPPERS", "MappingError", "to_bundle"]

MAPPERS: dict[str, Callable[[Context], None]] = {
    "ADT": map_adt,
    "ORU": map_oru,
    "ORM": map_orders,
    "OML": map_orders,
    "SIU": map_appointment,
    "MDM": map_document,
    "VXU": map_immunizations,
}


def to_bundle(
    message: Message,
    sender: Sender,
    maps: ConceptMaps | None = None,
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """The transaction Bundle for one message; raises MappingError naming the field."""
    code, event = message.message_code, message.trigger_event
    if profile_for(code, event) is None:
        raise MappingError("MSH-9", f"message type {message.message_type} is not supported")
    ctx = Context(message, sender, maps)
    MAPPERS[code](ctx)
    add_provenance(ctx, received_at)
    return ctx.bundle()
