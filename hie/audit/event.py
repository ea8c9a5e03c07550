"""AuditEvents after IHE BALP (Basic Audit Log Patterns), built from a RequestContext.

Every access the exchange performs becomes one :class:`~hie.storage.ports.AuditRecord`:
the AuditEvent's canonical JSON (numbered by the store when it is chained) and the keys
the audit trail is searched by. Query strings pass through a redaction hook before they
are stored, so that resident ID and phone numbers never reach the trail in plain text.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

import orjson

from hie.context import RequestContext
from hie.storage.ports import AuditRecord

Clock = Callable[[], datetime]
Redact = Callable[[str], str]
"""Turns a query string into what may be stored (``hie.audit.event.redact_numbers``)."""

BREAK_GLASS = "BTG"

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_RESTFUL = "http://hl7.org/fhir/restful-interaction"
_HIE_SUBTYPE = "urn:hie:audit-subtype"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_CLIENT_ID = "urn:hie:client"
_SECURITY = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


class Action(StrEnum):
    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(StrEnum):
    SUCCESS = "0"
    MINOR = "4"  # refused or not found: the caller's request failed
    SERIOUS = "8"  # the server failed
    MAJOR = "12"


# Event type per kind of access: FHIR's audit-event-type for REST, DCM codes otherwise.
_TYPES: dict[str, tuple[str, str, str]] = {
    "rest": (_EVENT_TYPE, "rest", "RESTful Operation"),
    "export": (_DCM, "110106", "Export"),
    "import": (_DCM, "110107", "Import"),
    "login": (_DCM, "110114", "User Authentication"),
    "query": (_DCM, "110112", "Query"),
    "card": (_EVENT_TYPE, "rest", "RESTful Operation"),
    "consent": (_DCM, "110113", "Security Alert"),
    "dicom": (_DCM, "110107", "Import"),
    "hl7v2": (_DCM, "110107", "Import"),
}
_CHANNELS = frozenset({"hl7v2", "dicom"})
_RESTFUL_CODES = frozenset(
    {"read", "vread", "update", "patch", "delete", "history", "create", "search", "batch"}
    | {"transaction", "operation", "capabilities", "search-type", "history-instance"}
)
_ACTIONS: dict[str, Action] = {
    "create": Action.CREATE,
    "read": Action.READ,
    "vread": Action.READ,
    "update": Action.UPDATE,
    "patch": Action.UPDATE,
    "delete": Action.DELETE,
}

# Resident ID numbers (18 characters, GB 11643) and mainland mobile numbers: kept out of
# the trail unless the identity work supplies a better hook.
_NUMBERS = re.compile(r"(?<![0-9])(?:[1-9][0-9]{16}[0-9Xx]|1[3-9][0-9]{9})(?![0-9])")


def redact_numbers(query: str) -> str:
    """The default redaction hook: masks what looks like a resident ID or phone number."""
    return _NUMBERS.sub(lambda m: "*" * len(m.group(0)), query)


# A reference to a patient from the elements that name one, in canonical JSON (sorted keys).
_PATIENT_REF = re.compile(
    rb'"(?:subject|patient|beneficiary|individual)":\{[^{}]*?"reference":"Patient/([A-Za-z0-9\-.]{1,64})"'
)


def patients_in(resource_type: str, resource_id: str, content: bytes) -> set[str]:
    """The patients a stored resource is about, as ``Patient/id`` references."""
    if resource_type == "Patient":
        return {f"Patient/{resource_id}"}
    return {f"Patient/{m.decode()}" for m in _PATIENT_REF.findall(content)}


_QUERY_PATIENT = re.compile(r"^(?:patient|subject)(?::Patient)?$")


def patients_in_query(resource_type: str, params: Sequence[tuple[str, str]]) -> set[str]:
    """The patients a search names by reference (``patient=``, ``subject=Patient/x``, ``_id``)."""
    out: set[str] = set()
    for name, value in params:
        if resource_type == "Patient" and name == "_id":
            out.update(f"Patient/{v}" for v in value.split(",") if v)
        elif _QUERY_PATIENT.match(name):
            for v in value.split(","):
                v = v.rsplit("/", 2)[-1] if v.count("/") > 1 else v
                if v.startswith("Patient/"):
                    out.add(v)
                elif v and "/" not in v and (name.endswith(":Patient") or name == "patient"):
                    out.add(f"Patient/{v}")
    return out


@dataclass(frozen=True, slots=True)
class Access:
    """What one audited access did (the context says who, for whom and why)."""

    subtype: str
    type: str = "rest"
    action: Action | None = None
    outcome: Outcome = Outcome.SUCCESS
    detail: str | None = None
    patients: Iterable[str] = ()
    entities: Iterable[str] = ()
    query: str | None = None
    description: str | None = None


class AuditBuilder:
    """Builds one AuditEvent per access; its ``redact`` hook filters every query string."""

    def __init__(
        self, *, clock: Clock, redact: Redact = redact_numbers, observer: str = "hie"
    ) -> None:
        self._clock = clock
        self.redact = redact
        self._observer = observer

    def build(self, ctx: RequestContext, access: Access) -> AuditRecord:
        recorded = self._clock()
        kind = access.type
        if kind == "rest" and ctx.source in _CHANNELS:
            # The adapters write through the exchange with their channel as the source.
            kind = ctx.source or kind
        action = access.action or _ACTIONS.get(access.subtype, Action.EXECUTE)
        if kind == "rest" and access.action is None and access.subtype == "search":
            action = Action.EXECUTE  # BALP: a query is an execute
        patients = tuple(sorted(set(access.patients)))
        entities = tuple(dict.fromkeys(access.entities))
        query = self.redact(access.query) if access.query else None
        address = ctx.source if ctx.source and ctx.source not in _CHANNELS else None
        # The compact form: what the AuditEvent is rendered from when the trail is read.
        content = orjson.dumps(
            (
                COMPACT,
                kind,
                access.subtype,
                action.value,
                access.outcome.value,
                access.detail or None,
                ctx.actor,
                address,
                ctx.token_id or None,
                ctx.practitioner or None,
                ctx.organization or None,
                ctx.purpose or None,
                ctx.reason or None,
                patients,
                entities,
                query,
                access.description if query is not None else None,
                self._observer,
            )
        )
        return AuditRecord(
            recorded=recorded,
            content=content,
            type=kind,
            subtype=access.subtype,
            action=action.value,
            outcome=access.outcome.value,
            agent=ctx.actor,
            organization=ctx.organization,
            purpose=ctx.purpose,
            break_glass=ctx.purpose == BREAK_GLASS,
            patients=patients,
            entities=entities,
        )


COMPACT = 1
"""Version of the stored compact form (a JSON array); records stored before it hold the
AuditEvent's JSON object itself, and are served as they are."""


def record_of(recorded: datetime, content: bytes) -> AuditRecord:
    """A record back from its compact form (with the search keys it was built with)."""
    fields = orjson.loads(content)
    if not isinstance(fields, list) or len(fields) != 18 or fields[0] != COMPACT:
        raise ValueError("not a compact audit record")
    purpose = fields[11]
    return AuditRecord(
        recorded=recorded,
        content=content,
        type=fields[1],
        subtype=fields[2],
        action=fields[3],
        outcome=fields[4],
        agent=fields[6],
        organization=fields[10],
        purpose=purpose,
        break_glass=purpose == BREAK_GLASS,
        patients=tuple(fields[13]),
        entities=tuple(fields[14]),
    )


def event_of(content: bytes, recorded: datetime) -> dict[str, Any]:
    """The AuditEvent a stored record stands for (without ``id``)."""
    if content[:1] == b"{":
        return cast(dict[str, Any], orjson.loads(content))
    fields = orjson.loads(content)
    if not isinstance(fields, list) or len(fields) != 18 or fields[0] != COMPACT:
        raise ValueError("not a stored audit record")
    return _event(recorded, *fields[1:])


def _event(
    recorded: datetime,
    kind: str,
    subtype: str,
    action: str,
    outcome: str,
    detail: str | None,
    actor: str,
    address: str | None,
    token_id: str | None,
    practitioner: str | None,
    organization: str | None,
    purpose: str | None,
    reason: str | None,
    patients: list[str],
    entities: list[str],
    query: str | None,
    description: str | None,
    observer: str,
) -> dict[str, Any]:
    system, code, display = _TYPES.get(kind, _TYPES["rest"])
    subtype_system = _RESTFUL if subtype in _RESTFUL_CODES else _HIE_SUBTYPE
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": system, "code": code, "display": display},
        "subtype": [{"system": subtype_system, "code": subtype}],
        "action": action,
        "recorded": _instant(recorded),
        "outcome": outcome,
        "agent": _agents(actor, address, token_id, practitioner, organization, observer),
        "source": {
            "observer": {"display": observer},
            "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if detail:
        event["outcomeDesc"] = detail
    if purpose:
        purpose_of: dict[str, Any] = {"coding": [{"system": _ACT_REASON, "code": purpose}]}
        if reason:
            purpose_of["text"] = reason
        event["purposeOfEvent"] = [purpose_of]
    if purpose == BREAK_GLASS:
        event["meta"] = {
            "security": [{"system": _ACT_REASON, "code": BREAK_GLASS, "display": "break the glass"}]
        }
    entity: list[dict[str, Any]] = [
        {
            "what": {"reference": p},
            "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for p in patients
    ]
    entity.extend(
        {
            "what": {"reference": e},
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        }
        for e in entities
        if e not in patients
    )
    if query is not None:
        q: dict[str, Any] = {
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
            "query": base64.b64encode(query.encode()).decode(),
        }
        if description:
            q["description"] = description
        entity.append(q)
    if entity:
        event["entity"] = entity
    return event


def _agents(
    actor: str,
    address: str | None,
    token_id: str | None,
    practitioner: str | None,
    organization: str | None,
    observer: str,
) -> list[dict[str, Any]]:
    client: dict[str, Any] = {
        "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": _CLIENT_ID, "value": actor}},
        "requestor": practitioner is None,
    }
    if address:
        client["network"] = {"address": address, "type": "2"}
    if token_id:
        client["altId"] = token_id
    agents = [client]
    if practitioner:
        agents.append(
            {
                "type": {"coding": [{"system": _PARTICIPATION, "code": "IRCP"}]},
                "who": {"reference": practitioner},
                "requestor": True,
            }
        )
    if organization:
        agents.append(
            {
                "type": {"coding": [{"system": _PARTICIPATION, "code": "PROV"}]},
                "who": {"reference": organization},
                "requestor": False,
            }
        )
    agents.append(
        {
            "type": {
                "coding": [{"system": _DCM, "code": "110152", "display": "Destination Role ID"}]
            },
            "who": {"display": observer},
            "requestor": False,
        }
    )
    return agents


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def with_id(content: bytes, recorded: datetime, seq: int, prev_hash: bytes, digest: bytes) -> bytes:
    """The stored AuditEvent as served: numbered, with its place in the chain attached."""
    event = event_of(content, recorded)
    event["id"] = str(seq)
    event.setdefault("extension", []).append(
        {
            "url": "urn:hie:audit-chain",
            "extension": [
                {"url": "previous", "valueString": prev_hash.hex()},
                {"url": "hash", "valueString": digest.hex()},
            ],
        }
    )
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
