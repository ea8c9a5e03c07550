"""Search for the exchange: parameters -> typed query -> store request -> result -> Bundle.

The parser (:class:`hie.search.QueryParser`) turns parameters into a typed query, and the
store plans and runs it (the SQL planner lives in ``hie.storage.sql``). This module owns
what lies between: paging cursors, totals, warnings for ignored parameters, compartments,
``$everything``, and shaping (``_summary``, ``_elements``) when the Bundle is rendered.

Paging is keyset paging: a link's ``_cursor`` holds the sort values and storage key of
the page's boundary resource, so a page never skips or repeats a resource whose sort
values stay the same while others are written.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from hie.errors import InvalidSearch, Issue
from hie.exchange.ports import Clock
from hie.exchange.results import SearchResult
from hie.fhir import bundles
from hie.fhir.bundles import page_url
from hie.search.dates import to_datetime
from hie.search.definitions import ParamType, SearchRegistry
from hie.search.params import QueryParser
from hie.search.query import EverythingQuery, IgnoredKind, SearchQuery, Summary, Total
from hie.search.shaping import Shaper
from hie.storage.ports import (
    Compartment,
    Cursor,
    EverythingRequest,
    SearchPage,
    SearchRequest,
    SortValue,
    StoredResource,
    Visibility,
)

CURSOR = "_cursor"
# Not echoed in links: transport parameters, and the cursor, which each link sets itself.
_NOT_ECHOED = frozenset({CURSOR, "_format", "_pretty"})
_MODIFIERS_DOC = {
    ParamType.STRING: ":exact, :contains, :missing",
    ParamType.TOKEN: ":not, :text, :missing, :of-type (identifiers)",
    ParamType.DATE: ":missing; prefixes eq ne gt lt ge le sa eb ap",
    ParamType.NUMBER: ":missing; prefixes eq ne gt lt ge le sa eb ap",
    ParamType.QUANTITY: ":missing; prefixes eq ne gt lt ge le sa eb ap; value|system|code",
    ParamType.REFERENCE: ":[type], :identifier, :missing; chaining and _has",
    ParamType.URI: ":below, :above, :missing",
    ParamType.COMPOSITE: ":missing; components joined by $",
}


def encode_cursor(cursor: Cursor) -> str:
    values: list[Any] = [{"d": str(v)} if isinstance(v, Decimal) else v for v in cursor.values]
    raw = orjson.dumps([values, cursor.key, cursor.before])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    bad = InvalidSearch(
        f"Invalid search parameter '{CURSOR}': not a paging cursor of this server",
        [Issue("error", "invalid", f"Invalid search parameter '{CURSOR}': not a cursor")],
    )
    try:
        values, key, before = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(values, list) or not isinstance(key, int) or not isinstance(before, bool):
            raise bad
        out: list[SortValue] = []
        for v in values:
            if isinstance(v, dict) and isinstance(v.get("d"), str):
                out.append(Decimal(v["d"]))
            elif v is None or (isinstance(v, int | str) and not isinstance(v, bool)):
                out.append(v)
            else:
                raise bad
    except (ValueError, TypeError, binascii.Error, InvalidOperation, orjson.JSONDecodeError):
        raise bad from None
    return Cursor(tuple(out), key, before)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed search: the query, its paging cursor and what links echo back."""

    query: SearchQuery
    cursor: Cursor | None
    echo: list[tuple[str, str]]
    warnings: list[Issue] = field(default_factory=list)


class Searcher:
    """The search half of the exchange; immutable, built once."""

    def __init__(
        self,
        *,
        parser: QueryParser,
        base_url: str,
        clock: Clock,
        default_count: int = 50,
        max_count: int = 1000,
    ) -> None:
        self.parser = parser
        self.registry: SearchRegistry = parser.registry
        self._shaper = Shaper(parser.registry)
        self._base = base_url.rstrip("/")
        self._clock = clock
        self._default_count = default_count
        self._max_count = max_count

    # -- parameters -------------------------------------------------------------------

    def prepare(
        self, resource_type: str, params: Sequence[tuple[str, str]], *, strict: bool
    ) -> Prepared:
        cursor = None
        criteria = []
        for name, value in params:
            if name == CURSOR:
                cursor = decode_cursor(value)
            else:
                criteria.append((name, value))
        query = self.parser.parse(resource_type, criteria, strict=strict)
        warnings = [
            Issue(
                "warning",
                "not-supported" if i.kind is not IgnoredKind.EMPTY else "informational",
                f"Parameter '{i.name}' was ignored: {i.reason}",
            )
            for i in query.ignored
        ]
        echo = [(n, v) for n, v in params if n not in _NOT_ECHOED]
        return Prepared(query, cursor, echo, warnings)

    def condition(self, resource_type: str, params: Sequence[tuple[str, str]]) -> SearchQuery:
        """The criteria of a conditional operation (never ignores one it cannot read)."""
        return self.parser.parse_condition(resource_type, params)

    def request(
        self,
        prepared: Prepared,
        visibility: Visibility,
        compartment: Compartment | None = None,
    ) -> SearchRequest:
        query = prepared.query
        count = self._count(query.count)
        if query.summary is Summary.COUNT:
            count = 0
        # A count runs only when asked for (_total, _summary=count): on a large result it
        # costs as much as the search. A page that holds the whole result counts itself.
        total = query.total
        wants_total = total in (Total.ACCURATE, Total.ESTIMATE) or count == 0
        return SearchRequest(
            query=query,
            count=count,
            cursor=prepared.cursor,
            total=wants_total,
            estimate=total is Total.ESTIMATE,
            compartment=compartment,
            visibility=visibility,
            now=self._clock(),
            max_includes=self._max_count,
        )

    def _count(self, count: int | None) -> int:
        return self._default_count if count is None else min(count, self._max_count)

    def compartment(self, patient_ids: Collection[str]) -> Compartment:
        return Compartment(frozenset(patient_ids), self.registry.compartment("Patient"))

    def in_patient_compartment(self, resource_type: str) -> bool:
        return resource_type == "Patient" or resource_type in self.registry.compartment("Patient")

    # -- $everything ----------------------------------------------------------------------

    def prepare_everything(
        self, params: Sequence[tuple[str, str]], *, strict: bool
    ) -> tuple[EverythingQuery, Cursor | None, list[tuple[str, str]], list[Issue]]:
        cursor = None
        rest = []
        for name, value in params:
            if name == CURSOR:
                cursor = decode_cursor(value)
            else:
                rest.append((name, value))
        query = self.parser.parse_everything(rest, strict=strict)
        warnings = [
            Issue("warning", "not-supported", f"Parameter '{i.name}' was ignored: {i.reason}")
            for i in query.ignored
        ]
        echo = [(n, v) for n, v in params if n not in _NOT_ECHOED]
        return query, cursor, echo, warnings

    def everything_request(
        self,
        query: EverythingQuery,
        cursor: Cursor | None,
        compartment: Compartment,
        visibility: Visibility,
        readable: frozenset[str] | None,
    ) -> EverythingRequest:
        types = frozenset(query.types)
        if readable is not None:
            types = (types & readable) if types else readable
            if not types:
                types = frozenset({"-"})  # nothing readable: match no type
        since: datetime | None = None
        if query.since is not None:
            since = to_datetime(query.since.low)
        return EverythingRequest(
            compartment=compartment,
            count=self._count(query.count),
            types=types,
            since=since,
            cursor=cursor,
            total=cursor is None,  # $everything reports its size on the first page
            visibility=visibility,
        )

    # -- results and rendering ------------------------------------------------------------

    def result(
        self,
        resource_type: str,
        path: str,
        echo: list[tuple[str, str]],
        warnings: list[Issue],
        page: SearchPage,
        items: list[StoredResource],
        included: list[StoredResource],
        query: SearchQuery | None = None,
    ) -> SearchResult:
        none = (
            query is not None and query.total is Total.NONE and query.summary is not Summary.COUNT
        )
        return SearchResult(
            resource_type=resource_type,
            entries=items,
            total=None if none else page.total,
            next_cursor=encode_cursor(page.next) if page.next else None,
            params=echo,
            warnings=warnings,
            summary_count=query is not None and query.summary is Summary.COUNT,
            included=included,
            previous_cursor=encode_cursor(page.previous) if page.previous else None,
            path=path,
            summary=query.summary if query is not None else None,
            elements=query.elements if query is not None else (),
        )

    def render(self, result: SearchResult) -> bytes:
        path = result.path or result.resource_type

        def link(cursor: str | None) -> str | None:
            if cursor is None:
                return None
            return page_url(self._base, path, [*result.params, (CURSOR, cursor)])

        summary = result.summary if isinstance(result.summary, Summary) else None
        entries = self._shape(result.entries, summary, result.elements)
        included = self._shape(result.included, summary, result.elements)
        return bundles.searchset(
            base=self._base,
            entries=entries,
            total=result.total,
            self_url=page_url(self._base, path, result.params),
            next_url=link(result.next_cursor),
            previous_url=link(result.previous_cursor),
            warnings=result.warnings,
            includes=included,
        )

    def _shape(
        self, items: list[StoredResource], summary: Summary | None, elements: Sequence[str]
    ) -> list[StoredResource]:
        if not self._shaper.needed(summary, elements):
            return items
        out = []
        for s in items:
            content = self._shaper.shape(s.content, s.type, summary, elements)
            out.append(
                StoredResource(
                    s.type, s.id, s.version, s.last_updated, s.deleted, content, s.custodian
                )
            )
        return out

    # -- the CapabilityStatement ------------------------------------------------------------

    def parameters(
        self, resource_type: str, unindexed: Collection[tuple[str, str]]
    ) -> list[dict[str, str]]:
        out = []
        for code, p in self.registry.params(resource_type).items():
            if not p.searchable or (resource_type, code) in unindexed:
                continue
            out.append(
                {
                    "name": code,
                    "definition": p.url,
                    "type": p.type.value,
                    "documentation": "Modifiers: " + _MODIFIERS_DOC.get(p.type, "none"),
                }
            )
        return out

    def includes(self, resource_type: str) -> tuple[list[str], list[str]]:
        """``searchInclude`` and ``searchRevInclude`` values for the CapabilityStatement."""
        forward = ["*"] + [
            f"{resource_type}:{code}"
            for code, p in self.registry.params(resource_type).items()
            if p.type is ParamType.REFERENCE and p.searchable
        ]
        reverse = ["*"]
        for source in self.registry.resource_types:
            for code, p in self.registry.params(source).items():
                # "Any resource" parameters are left out to keep the list readable.
                specific = len(p.targets) < 50
                if p.type is ParamType.REFERENCE and resource_type in p.targets and specific:
                    reverse.append(f"{source}:{code}")
        return forward, reverse
