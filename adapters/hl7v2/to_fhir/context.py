"""The state one message's mapping shares: sender, message, bundle under construction.

Every resource is written idempotently, so re-sending or replaying a message never
duplicates anything: ``PUT Type?identifier=system|value`` (conditional update keyed by an
identifier derived from the message) or ``POST`` with ``ifNoneExist``. ``fullUrl`` values
are ``urn:uuid:`` UUIDs derived from the same keys, so a mapping is deterministic.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from adapters.hl7v2 import timestamps
from adapters.hl7v2.message import Message, Segment
from adapters.hl7v2.senders import Sender
from adapters.hl7v2.to_fhir.codes import BASE
from terminology.conceptmaps import ConceptMaps

Resource = dict[str, Any]
_NAMESPACE = uuid.UUID("7f0c6f4e-6d1b-4b53-9d7e-1f1a2d6c0b11")


class MappingError(ValueError):
    """A message cannot be turned into FHIR; ``location`` names the field (``PID-7``)."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}" if location else reason)
        self.location = location
        self.reason = reason


def search_escape(value: str) -> str:
    """A token value for a conditional URL: FHIR search escapes, then URL encoding."""
    escaped = value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
    escaped = escaped.replace("$", "\\$")
    return quote(escaped, safe="")


def token(system: str, value: str) -> str:
    return f"{quote(system, safe=':/')}|{search_escape(value)}"


@dataclass
class Entry:
    full_url: str
    resource: Resource
    request: dict[str, str]


@dataclass
class Context:
    """One message being mapped for one sender."""

    message: Message
    sender: Sender
    maps: ConceptMaps | None = None
    entries: list[Entry] = field(default_factory=list)
    _keys: dict[str, str] = field(default_factory=dict)
    source: str = ""
    """``meta.source`` of everything this message writes."""

    def __post_init__(self) -> None:
        self.source = (
            f"{BASE}:{quote(self.sender.application, safe='')}:"
            f"{quote(self.sender.facility, safe='')}#{quote(self.message.control_id, safe='')}"
        )
        self._facility_q = quote(self.facility, safe="")

    @property
    def facility(self) -> str:
        return self.sender.facility or self.sender.application

    @property
    def offset(self) -> str:
        return self.sender.tz_offset

    def system(self, kind: str) -> str:
        """An identifier system owned by this sender's facility (``visit``, ``filler`` ...)."""
        return f"{BASE}:{self._facility_q}:{kind}"

    # -- bundle ------------------------------------------------------------------------------

    def put(self, resource: Resource, system: str, value: str) -> str:
        """Conditional update keyed by identifier; returns the entry's fullUrl.

        The identifier is added to the resource when it is not there yet.
        """
        rtype = resource["resourceType"]
        key = f"{rtype}|{system}|{value}"
        if key in self._keys:
            return self._keys[key]
        idents: list[dict[str, Any]] = resource.setdefault("identifier", [])
        if not any(i.get("system") == system and i.get("value") == value for i in idents):
            idents.insert(0, {"system": system, "value": value})
        return self._add(
            key, resource, {"method": "PUT", "url": f"{rtype}?identifier={token(system, value)}"}
        )

    def post_once(self, resource: Resource, condition: str) -> str:
        """Create unless ``Type?condition`` matches (ifNoneExist)."""
        rtype = resource["resourceType"]
        key = f"{rtype}?{condition}"
        if key in self._keys:
            return self._keys[key]
        return self._add(key, resource, {"method": "POST", "url": rtype, "ifNoneExist": condition})

    def url_for(self, rtype: str, system: str, value: str) -> str:
        """The fullUrl ``put`` gives (or will give) the resource with this identifier."""
        return self._url(f"{rtype}|{system}|{value}")

    def _url(self, key: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, self.source + '|' + key)}"

    def _add(self, key: str, resource: Resource, request: dict[str, str]) -> str:
        full_url = self._url(key)
        meta = resource.setdefault("meta", {})
        meta["source"] = self.source
        self._keys[key] = full_url
        self.entries.append(Entry(full_url, resource, request))
        return full_url

    def identifier_of(self, full_url: str) -> str:
        """The key value an entry was written under (its first identifier)."""
        for e in self.entries:
            if e.full_url == full_url:
                idents = e.resource.get("identifier") or [{}]
                return str(idents[0].get("value", ""))
        return ""

    def bundle(self) -> Resource:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": e.full_url, "resource": e.resource, "request": e.request}
                for e in self.entries
            ],
        }

    # -- values ------------------------------------------------------------------------------

    def datetime(self, seg: Segment, n: int, comp: int = 1) -> str | None:
        value = seg.get(n, comp)
        if not value:
            return None
        try:
            return timestamps.to_datetime(value, self.offset)
        except timestamps.InvalidTimestamp as exc:
            raise MappingError(f"{seg.name}-{n}", str(exc)) from None

    def date(self, seg: Segment, n: int, comp: int = 1) -> str | None:
        value = seg.get(n, comp)
        if not value:
            return None
        try:
            return timestamps.to_date(value)
        except timestamps.InvalidTimestamp as exc:
            raise MappingError(f"{seg.name}-{n}", str(exc)) from None

    def instant(self, seg: Segment, n: int, comp: int = 1) -> str | None:
        value = seg.get(n, comp)
        if not value:
            return None
        try:
            return timestamps.to_instant(value, self.offset)
        except timestamps.InvalidTimestamp as exc:
            raise MappingError(f"{seg.name}-{n}", str(exc)) from None

    def reference(self, full_url: str) -> dict[str, str]:
        return {"reference": full_url}

    def organization(self) -> dict[str, str] | None:
        org = self.sender.organization
        return {"reference": org} if org else None


def first_value(values: Sequence[str]) -> str:
    for v in values:
        if v:
            return v
    return ""
