"""Batch and transaction Bundles (FHIR R4 http.html#transaction).

A transaction runs in one unit of work: every resource is validated first, then locks
are taken in a fixed order, ids are assigned, ``urn:uuid`` and conditional references
are rewritten, and the entries run in the order the specification gives: DELETE, POST,
PUT/PATCH, then GET. Any failure rolls the whole Bundle back. A batch runs each entry
as a transaction of one and reports each entry's own outcome.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from hie.context import Interaction, RequestContext
from hie.errors import (
    BadRequest,
    FhirError,
    InvalidResource,
    Issue,
    MultipleMatches,
    at_path,
    operation_outcome,
)
from hie.exchange.writes import Writer, Written, lock_key
from hie.fhir.canonical import instant
from hie.fhir.references import rewrite_references
from hie.storage.ports import Store, StoredResource, UnitOfWork

if TYPE_CHECKING:
    from hie.exchange.service import Exchange

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_CONDITIONAL_REF = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}
_PATCH_TYPES = {"application/json-patch+json"}


@dataclass
class Entry:
    """One Bundle entry's request, parsed."""

    index: int
    method: str
    resource_type: str
    id: str | None = None
    version: str | None = None
    params: list[tuple[str, str]] | None = None
    full_url: str | None = None
    resource: dict[str, Any] | None = None
    if_none_exist: list[tuple[str, str]] | None = None
    if_match: int | None = None
    history: bool = False
    target_id: str | None = None  # assigned during resolution
    fresh: bool = False  # target_id was minted here: nothing can exist under it yet
    matched: StoredResource | None = None
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _fail(entry: Entry, error: FhirError, sub: str = "") -> FhirError:
    """Re-raise ``error`` with its issues pointing into the Bundle entry."""
    prefix = entry.where + sub
    issues = [
        Issue(
            i.severity,
            i.code,
            f"entry {entry.index} ({entry.method} {entry.resource_type}): {i.diagnostics}",
            i.expression,
        )
        for i in at_path(error, prefix)
    ]
    clone = type(error)(
        f"entry {entry.index}: {error.message}", issues=issues, headers=error.headers
    )
    return clone


def _if_match(value: Any) -> int | None:
    if value is None:
        return None
    match = re.fullmatch(r'(?:W/)?"?(\d+)"?', str(value).strip())
    if not match:
        raise BadRequest(f"ifMatch '{value}' is not a version ETag")
    return int(match.group(1))


class BundleProcessor:
    def __init__(self, exchange: Exchange, writer: Writer, store: Store) -> None:
        self._x = exchange
        self._writer = writer
        self._store = store

    # -- parsing -------------------------------------------------------------------

    def _parse_url(self, url: str) -> tuple[list[str], list[tuple[str, str]] | None]:
        base = self._x.base_url
        if base and url.startswith(base + "/"):
            url = url[len(base) + 1 :]
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            raise BadRequest(f"request.url '{url}' is not on this server")
        path = [p for p in parts.path.split("/") if p]
        query = parse_qsl(parts.query, keep_blank_values=True) if "?" in url else None
        return path, query

    def _parse(self, index: int, raw: Any) -> Entry:
        where = f"Bundle.entry[{index}]"
        if not isinstance(raw, dict):
            raise BadRequest.at(f"{where} is not an object", where, code="structure")
        request = raw.get("request")
        if (
            not isinstance(request, dict)
            or not isinstance(request.get("method"), str)
            or not isinstance(request.get("url"), str)
        ):
            raise BadRequest.at(
                f"{where} needs request.method and request.url", f"{where}.request", code="required"
            )
        method = request["method"].upper()
        if method not in _ORDER:
            raise BadRequest(f"{where}: method '{method}' is not supported in a Bundle")
        path, query = self._parse_url(request["url"])
        if not path:
            raise BadRequest(f"{where}: request.url '{request['url']}' names no resource type")
        resource = raw.get("resource")
        entry = Entry(
            index=index,
            method="GET" if method == "HEAD" else method,
            resource_type=path[0],
            full_url=raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None,
            resource=resource if isinstance(resource, dict) else None,
            params=query,
            if_match=_if_match(request.get("ifMatch")),
        )
        if isinstance(request.get("ifNoneExist"), str) and request["ifNoneExist"]:
            entry.if_none_exist = parse_qsl(
                request["ifNoneExist"].lstrip("?"), keep_blank_values=True
            )
        rest = path[1:]
        if len(rest) >= 1:
            entry.id = rest[0]
        if len(rest) >= 2:
            if rest[1] != "_history" or len(rest) > 3:
                raise BadRequest(
                    f"{where}: request.url '{request['url']}' is not supported in a Bundle"
                )
            entry.history = True
            entry.version = rest[2] if len(rest) == 3 else None
        self._x.check_type(entry.resource_type)
        if entry.method in ("POST", "PUT") and entry.resource is None:
            raise BadRequest.at(
                f"{where}: {entry.method} needs a resource", f"{where}.resource", code="required"
            )
        if entry.method == "POST" and entry.id is not None:
            raise BadRequest(f"{where}: POST goes to the type, not to '{request['url']}'")
        if entry.method in ("PUT", "DELETE", "PATCH") and entry.id is None and not entry.params:
            raise BadRequest(f"{where}: {entry.method} needs an id or search criteria")
        if entry.method != "GET" and entry.history:
            raise BadRequest(f"{where}: {entry.method} cannot target a history URL")
        return entry

    # -- running -------------------------------------------------------------------

    def process(self, ctx: RequestContext, bundle: Any, *, prefer: str) -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("the body must be a Bundle")
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise BadRequest(f"only transaction and batch Bundles can be processed, not '{kind}'")
        raw_entries = bundle.get("entry") or []
        if not isinstance(raw_entries, list):
            raise BadRequest("Bundle.entry must be an array")
        if kind == "transaction":
            return self.process_many([(ctx, bundle)], prefer=prefer)[0]
        responses = [self._batch_entry(ctx, i, raw, prefer) for i, raw in enumerate(raw_entries)]
        return {"resourceType": "Bundle", "type": f"{kind}-response", "entry": responses}

    def process_many(
        self, items: Sequence[tuple[RequestContext, Any]], *, prefer: str
    ) -> list[dict[str, Any]]:
        """Several transaction Bundles in one unit of work: one commit for them all.

        Each Bundle is validated and resolved on its own, and sees the writes of the ones
        before it; any failure rolls every Bundle back (the caller may retry them apart).
        """
        parsed: list[tuple[RequestContext, list[Entry]]] = []
        for ctx, bundle in items:
            if (
                not isinstance(bundle, dict)
                or bundle.get("resourceType") != "Bundle"
                or bundle.get("type") != "transaction"
            ):
                raise BadRequest("expected a Bundle of type 'transaction'")
            raw_entries = bundle.get("entry") or []
            if not isinstance(raw_entries, list):
                raise BadRequest("Bundle.entry must be an array")
            entries = [self._parse(i, raw) for i, raw in enumerate(raw_entries)]
            self._prepare(ctx, entries)
            parsed.append((ctx, entries))
        with self._store.unit_of_work(write=True) as uow:
            # Every Bundle's locks first, in one global order: no deadlock between groups.
            uow.lock_all(sorted({k for _, entries in parsed for k in self._lock_keys(entries)}))
            for ctx, entries in parsed:
                self._run(uow, ctx, entries, prefer)
        return [
            {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [e.response for e in entries],
            }
            for _, entries in parsed
        ]

    def _batch_entry(
        self, ctx: RequestContext, index: int, raw: Any, prefer: str
    ) -> dict[str, Any]:
        try:
            entry = self._parse(index, raw)
            self._prepare(ctx, [entry])
            with self._store.unit_of_work(write=True) as uow:
                uow.lock_all(sorted(self._lock_keys([entry])))
                self._run(uow, ctx, [entry], prefer)
            return entry.response
        except FhirError as error:
            return {
                "response": {
                    "status": f"{error.status}",
                    "outcome": operation_outcome(error.all_issues()),
                }
            }

    def _prepare(self, ctx: RequestContext, entries: list[Entry]) -> None:
        """Validate and authorise every entry before any lock is taken."""
        issues: list[Issue] = []
        first: FhirError | None = None
        for entry in entries:
            try:
                self._authorize(ctx, entry)
                if entry.method == "POST":
                    body = self._x.validated(entry.resource, entry.resource_type)
                    body.pop("id", None)
                elif entry.method == "PUT":
                    self._x.validated(entry.resource, entry.resource_type, entry.id)
                elif entry.method == "PATCH":
                    entry.resource = {"operations": self._patch_operations(entry)}
            except FhirError as error:
                failed = _fail(entry, error, ".resource" if entry.resource is not None else "")
                first = first or failed
                issues.extend(failed.all_issues())
        if first is not None:
            if len(issues) > len(first.all_issues()):
                raise InvalidResource(
                    f"{len(issues)} problems in the Bundle; nothing was written", issues=issues
                )
            raise first

    def _authorize(self, ctx: RequestContext, entry: Entry) -> None:
        interaction = {
            "POST": Interaction.CREATE,
            "PUT": Interaction.UPDATE,
            "PATCH": Interaction.UPDATE,
            "DELETE": Interaction.DELETE,
        }.get(entry.method)
        if interaction is None:
            interaction = Interaction.READ if entry.id else Interaction.SEARCH
        self._x.require(ctx, interaction, entry.resource_type)
        if entry.params is not None or entry.if_none_exist:
            self._x.require(ctx, Interaction.SEARCH, entry.resource_type)

    def _patch_operations(self, entry: Entry) -> Any:
        binary = entry.resource
        if (
            not binary
            or binary.get("resourceType") != "Binary"
            or binary.get("contentType") not in _PATCH_TYPES
        ):
            raise BadRequest(
                "a PATCH entry carries a Binary with contentType application/json-patch+json"
            )
        try:
            return orjson.loads(base64.b64decode(binary.get("data", ""), validate=True))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise BadRequest(f"the PATCH entry's Binary.data is not base64 JSON: {exc}") from exc

    @staticmethod
    def _lock_keys(entries: list[Entry]) -> set[str]:
        keys = set()
        for entry in entries:
            if entry.method == "POST" and entry.if_none_exist:
                keys.add(lock_key(entry.resource_type, entry.if_none_exist))
            elif entry.method in ("PUT", "DELETE", "PATCH"):
                if entry.id is not None:
                    keys.add(f"{entry.resource_type}/{entry.id}")
                elif entry.params:
                    keys.add(lock_key(entry.resource_type, entry.params))
        return keys

    def _run(self, uow: UnitOfWork, ctx: RequestContext, entries: list[Entry], prefer: str) -> None:
        """One Bundle's entries, its locks already held (``process_many``)."""
        ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
        id_map = self._resolve(uow, entries)
        self._rewrite(uow, entries, id_map)
        for entry in ordered:
            try:
                self._execute(uow, ctx, entry, prefer)
            except FhirError as error:
                raise _fail(entry, error) from error

    def _resolve(self, uow: UnitOfWork, entries: list[Entry]) -> dict[str, str]:
        """Assign every entry its target id; map fullUrls to local references."""
        id_map: dict[str, str] = {}
        for entry in entries:
            try:
                if entry.method == "POST":
                    if entry.if_none_exist:
                        entry.matched = self._writer.match_one(
                            uow, entry.resource_type, entry.if_none_exist
                        )
                    entry.target_id = entry.matched.id if entry.matched else self._x.new_id()
                elif (
                    entry.method in ("PUT", "DELETE", "PATCH") and entry.id is None and entry.params
                ):
                    entry.matched = self._writer.match_one(uow, entry.resource_type, entry.params)
                    if entry.matched is not None:
                        entry.target_id = entry.matched.id
                    elif entry.method == "PUT":
                        body_id = entry.resource.get("id") if entry.resource else None
                        entry.fresh = not isinstance(body_id, str)
                        entry.target_id = body_id if isinstance(body_id, str) else self._x.new_id()
                else:
                    entry.target_id = entry.id
            except FhirError as error:
                raise _fail(entry, error) from error
            if entry.full_url and entry.target_id and entry.method in ("POST", "PUT"):
                id_map[entry.full_url] = f"{entry.resource_type}/{entry.target_id}"
        return id_map

    def _rewrite(self, uow: UnitOfWork, entries: list[Entry], id_map: dict[str, str]) -> None:
        resolved: dict[str, str] = {}

        for entry in entries:
            if entry.method not in ("POST", "PUT") or entry.resource is None:
                continue

            def replace(ref: str, path: str, entry: Entry = entry) -> str | None:
                if ref in id_map:
                    return id_map[ref]
                if ref in resolved:
                    return resolved[ref]
                match = _CONDITIONAL_REF.match(ref)
                if match is None:
                    if ref.startswith(("urn:uuid:", "urn:oid:")):
                        raise BadRequest.at(
                            f"entry {entry.index}: reference '{ref}' names no entry of this Bundle",
                            path,
                            code="not-found",
                        )
                    return None
                resolved[ref] = self._conditional_reference(
                    uow, entry, ref, path, match.group(1), match.group(2)
                )
                return resolved[ref]

            rewrite_references(entry.resource, replace, f"{entry.where}.resource")

    def _conditional_reference(
        self, uow: UnitOfWork, entry: Entry, ref: str, path: str, resource_type: str, query: str
    ) -> str:
        params = parse_qsl(query, keep_blank_values=True)
        where = f"entry {entry.index}: conditional reference '{ref}'"
        try:
            self._x.check_type(resource_type)
            matches = self._writer.match(uow, resource_type, params)
        except FhirError as error:
            raise BadRequest.at(f"{where}: {error.message}", path) from error
        if not matches:
            raise BadRequest.at(f"{where} matches no resource", path, code="not-found")
        if len(matches) > 1:
            raise MultipleMatches.at(f"{where} matches more than one resource", path)
        return f"{resource_type}/{matches[0].id}"

    def _execute(self, uow: UnitOfWork, ctx: RequestContext, entry: Entry, prefer: str) -> None:
        writer = self._writer
        written: Written | None = None
        if entry.method == "POST":
            assert entry.resource is not None
            assert entry.target_id is not None
            if entry.matched is not None:
                written = Written(entry.matched, 200)
            else:
                written = writer.create(uow, ctx, entry.resource, id_=entry.target_id)
            self._x.record(
                ctx,
                "create",
                resource_type=entry.resource_type,
                resource_id=written.stored.id,
                uow=uow,
                stored=written.stored,
            )
        elif entry.method == "PUT":
            assert entry.resource is not None
            assert entry.target_id is not None
            body = entry.resource
            if entry.id is None:
                body["id"] = entry.target_id
            if entry.fresh and entry.if_match is None:
                # A conditional update that matched nothing creates under a new id: no
                # current version to lock or read, and the insert can wait for the commit.
                written = writer.create(uow, ctx, body, id_=entry.target_id, method="PUT")
            else:
                written = writer.update(uow, ctx, body, entry.target_id, if_match=entry.if_match)
            self._x.record(
                ctx,
                "update",
                resource_type=entry.resource_type,
                resource_id=entry.target_id,
                uow=uow,
                stored=written.stored,
            )
        elif entry.method == "PATCH":
            if entry.target_id is None:
                raise BadRequest(f"no {entry.resource_type} matches the PATCH criteria")
            assert entry.resource is not None
            result, version = writer.patched(
                uow,
                entry.resource_type,
                entry.target_id,
                entry.resource["operations"],
                if_match=entry.if_match,
            )
            body = self._x.validated(result, entry.resource_type, entry.target_id)
            written = writer.update(
                uow, ctx, body, entry.target_id, if_match=version, method="PATCH"
            )
            written = Written(written.stored, 200)
            self._x.record(
                ctx,
                "patch",
                resource_type=entry.resource_type,
                resource_id=entry.target_id,
                uow=uow,
                stored=written.stored,
            )
        elif entry.method == "DELETE":
            if entry.target_id is None:
                entry.response = {"response": {"status": "204 No Content"}}
                return
            written = writer.delete(uow, ctx, entry.resource_type, entry.target_id)
            self._x.record(
                ctx,
                "delete",
                resource_type=entry.resource_type,
                resource_id=entry.target_id,
                uow=uow,
                stored=written.stored,
            )
        else:
            entry.response = self._get(uow, ctx, entry)
            return
        entry.response = self._written_response(ctx, entry, written, prefer)

    def _written_response(
        self, ctx: RequestContext, entry: Entry, written: Written, prefer: str
    ) -> dict[str, Any]:
        stored = self._x.reveal(ctx, written.stored)
        response: dict[str, Any] = {"status": _STATUS_TEXT[written.status]}
        out: dict[str, Any] = {}
        if not stored.deleted:
            out["fullUrl"] = f"{self._x.base_url}/{stored.type}/{stored.id}"
            response["location"] = f"{stored.type}/{stored.id}/_history/{stored.version}"
            response["etag"] = f'W/"{stored.version}"'
            response["lastModified"] = instant(stored.last_updated)
            if prefer == "representation":
                out["resource"] = orjson.loads(stored.content)
        out["response"] = response
        return out

    def _get(self, uow: UnitOfWork, ctx: RequestContext, entry: Entry) -> dict[str, Any]:
        x = self._x
        if entry.id is None:
            result = x.search_in(uow, ctx, entry.resource_type, entry.params or [], audit_uow=uow)
            searchset = x.render_search(result)
            return {"resource": orjson.loads(searchset), "response": {"status": "200 OK"}}
        if entry.history and entry.version is None:
            raise BadRequest("instance history is not supported inside a Bundle")
        stored = x.read_in(uow, ctx, entry.resource_type, entry.id, entry.version, audit_uow=uow)
        return {
            "fullUrl": f"{x.base_url}/{stored.type}/{stored.id}",
            "resource": orjson.loads(stored.content),
            "response": {
                "status": "200 OK",
                "etag": f'W/"{stored.version}"',
                "lastModified": instant(stored.last_updated),
            },
        }
