"""Bundles rendered straight from stored bytes: no resource is parsed on the way out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson

from hie.errors import Issue, operation_outcome
from hie.fhir.canonical import instant


class StoredLike(Protocol):
    """A stored version as the renderers need it (``hie.storage.ports.StoredResource``)."""

    @property
    def type(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def last_updated(self) -> datetime: ...
    @property
    def deleted(self) -> bool: ...
    @property
    def content(self) -> bytes: ...


def page_url(base: str, path: str, params: Sequence[tuple[str, str]]) -> str:
    query = urlencode(list(params))
    return f"{base}/{path}" + (f"?{query}" if query else "")


def _links(self_url: str, next_url: str | None, previous_url: str | None = None) -> bytes:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    if previous_url:
        links.append({"relation": "previous", "url": previous_url})
    return orjson.dumps(links)


def searchset(
    *,
    base: str,
    entries: Sequence[StoredLike],
    total: int | None,
    self_url: str,
    next_url: str | None,
    warnings: Sequence[Issue] = (),
    includes: Sequence[StoredLike] = (),
    previous_url: str | None = None,
) -> bytes:
    parts = [b'{"resourceType":"Bundle","type":"searchset"']
    if total is not None:
        parts.append(b',"total":%d' % total)
    parts.append(b',"link":' + _links(self_url, next_url, previous_url))
    items: list[bytes] = []
    for mode, group in (("match", entries), ("include", includes)):
        search = b',"search":{"mode":"%s"}}' % mode.encode()
        for stored in group:
            url = orjson.dumps(f"{base}/{stored.type}/{stored.id}")
            items.append(b'{"fullUrl":' + url + b',"resource":' + stored.content + search)
    if warnings:
        outcome = orjson.dumps(operation_outcome(warnings))
        items.append(b'{"resource":' + outcome + b',"search":{"mode":"outcome"}}')
    if items:
        parts.append(b',"entry":[' + b",".join(items) + b"]")
    parts.append(b"}")
    return b"".join(parts)


def history(
    *,
    base: str,
    entries: Sequence[StoredLike],
    total: int | None,
    self_url: str,
    next_url: str | None,
) -> bytes:
    parts = [b'{"resourceType":"Bundle","type":"history"']
    if total is not None:  # left out when it would count what the caller may not see
        parts.append(b',"total":%d' % total)
    parts.append(b',"link":' + _links(self_url, next_url))
    items: list[bytes] = []
    for stored in entries:
        local = f"{stored.type}/{stored.id}"
        if stored.deleted:
            request: dict[str, Any] = {"method": "DELETE", "url": local}
            status = "204 No Content"
        elif stored.version == 1:
            request = {"method": "POST", "url": stored.type}
            status = "201 Created"
        else:
            request = {"method": "PUT", "url": local}
            status = "200 OK"
        response = {
            "status": status,
            "etag": f'W/"{stored.version}"',
            "lastModified": instant(stored.last_updated),
        }
        head = b'{"fullUrl":' + orjson.dumps(f"{base}/{local}")
        body = b',"resource":' + stored.content if not stored.deleted else b""
        tail = (
            b',"request":' + orjson.dumps(request) + b',"response":' + orjson.dumps(response) + b"}"
        )
        items.append(head + body + tail)
    if items:
        parts.append(b',"entry":[' + b",".join(items) + b"]")
    parts.append(b"}")
    return b"".join(parts)
