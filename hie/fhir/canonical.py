"""Canonical JSON bytes: how every resource is stored and served.

A stored resource is ``resourceType``, ``id`` and ``meta`` first, then its elements in
the order the writer sent them, compact UTF-8 JSON. Reads serve these bytes unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from hie.errors import BadRequest

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def instant(moment: datetime) -> str:
    """FHIR ``instant`` in UTC with millisecond precision."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate, as ``email.utils.format_datetime(usegmt=True)`` writes it
    (formatted here directly: every read's Last-Modified, and that is several times
    slower)."""
    m = moment.astimezone(UTC)
    return (
        f"{_DAYS[m.weekday()]}, {m.day:02d} {_MONTHS[m.month - 1]} {m.year:04d} "
        f"{m.hour:02d}:{m.minute:02d}:{m.second:02d} GMT"
    )


def parse_instant(value: str) -> datetime:
    """Parse an instant or dateTime with offset; naive values are taken as UTC."""
    text = value.strip().replace("Z", "+00:00").replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadRequest(f"'{value}' is not a valid instant") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def loads(body: bytes | str) -> Any:
    """Parse JSON text; a syntax error is a 400 naming where it is."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc


def with_meta(
    resource: Mapping[str, Any], *, id_: str, version: int, last_updated: datetime
) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(last_updated)
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": id_, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal apart from meta.versionId, meta.lastUpdated and meta.source.

    An update equal in this sense is a no-op (as in HAPI FHIR): the current version and
    its meta.source stay. meta.source names the system or message a version came from;
    a feed that re-sends the same content from a new message (every HL7 v2 message has
    its own) must not churn history, and its Provenance records the message anyway.
    """

    def strip(resource: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(resource)
        meta = dict(out.get("meta") or {})
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        meta.pop("source", None)
        if meta:
            out["meta"] = meta
        else:
            out.pop("meta", None)
        out.pop("id", None)
        return out

    return strip(a) == strip(b)
