"""Writing resources inside a unit of work: create, update, patch and delete.

These run after validation and authorisation, inside the caller's unit of work, so a
single REST call and a whole transaction Bundle share exactly the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonpatch
import orjson

from hie.context import RequestContext
from hie.errors import (
    BadRequest,
    Conflict,
    MultipleMatches,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from hie.exchange.ports import Clock, IdFactory, Indexer
from hie.fhir.canonical import dumps, same_content, with_meta
from hie.search.query import SearchQuery
from hie.storage.ports import (
    NewVersion,
    SearchRequest,
    StoredResource,
    UnitOfWork,
    VersionConflict,
)

Conditions = Callable[[str, Sequence[tuple[str, str]]], SearchQuery]
# Called after each write in its unit of work with the plain resource (None: a deletion).
Observer = Callable[[UnitOfWork, RequestContext, str, str, Mapping[str, Any] | None], None]


def _unchanged(body: dict[str, Any]) -> dict[str, Any]:
    return body


def _as_stored(content: bytes) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(content)
    return body


# Consent on writes: raises when ``ctx`` may not see the existing resource it would
# change (or, with ``conditional``, that a condition matched).
Guard = Callable[[UnitOfWork, RequestContext, StoredResource, bool], None]


def _no_guard(uow: UnitOfWork, ctx: RequestContext, current: StoredResource, cond: bool) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Written:
    stored: StoredResource
    status: int  # 201 created, 200 updated or matched, 204 deleted


def lock_key(resource_type: str, params: Sequence[tuple[str, str]]) -> str:
    """One key per (type, criteria) so identical conditional writes queue behind each other."""
    return resource_type + "?" + "&".join(f"{n}={v}" for n, v in sorted(params))


class Writer:
    def __init__(
        self,
        *,
        indexer: Indexer,
        conditions: Conditions,
        clock: Clock,
        new_id: IdFactory,
        seal: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged,
        plain: Callable[[bytes], dict[str, Any]] = _as_stored,
        guard: Guard = _no_guard,
    ) -> None:
        """``conditions`` parses the criteria of conditional operations (any search);
        ``seal`` protects numbers before storing and ``plain`` opens them again
        (``hie.exchange.protection``); ``guard`` is consent on writes."""
        self._guard = guard
        self._indexer = indexer
        self._conditions = conditions
        self._clock = clock
        self._new_id = new_id
        self._seal = seal
        self._plain = plain
        self._observers: list[Observer] = []

    def observe(self, observer: Observer) -> None:
        """Run ``observer`` after every write (the master patient index)."""
        self._observers.append(observer)

    def now(self) -> Any:
        # FHIR instants and the stored time agree to the millisecond.
        moment = self._clock()
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    # -- matching -------------------------------------------------------------

    def match(
        self, uow: UnitOfWork, resource_type: str, params: Sequence[tuple[str, str]], limit: int = 2
    ) -> list[StoredResource]:
        # Conditions see every resource: a hidden match must still stop a duplicate.
        query = self._conditions(resource_type, params)
        return uow.search(SearchRequest(query=query, count=limit, now=self._clock())).items

    def match_one(
        self, uow: UnitOfWork, resource_type: str, params: Sequence[tuple[str, str]]
    ) -> StoredResource | None:
        matches = self.match(uow, resource_type, params)
        if len(matches) > 1:
            query = "&".join(f"{n}={v}" for n, v in params)
            raise MultipleMatches(f"more than one {resource_type} matches '{query}'")
        return matches[0] if matches else None

    # -- writes ---------------------------------------------------------------

    def _store(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        resource: Mapping[str, Any],
        *,
        id_: str,
        version: int,
        method: str,
        expected: int | None,
        custodian: str | None = None,
        observed: bool = True,
    ) -> StoredResource:
        now = self.now()
        # The custodian is the organisation that wrote it; administration keeps the old one.
        custodian = ctx.organization or custodian
        body = with_meta(self._seal(dict(resource)), id_=id_, version=version, last_updated=now)
        content = dumps(body)
        new = NewVersion(
            type=body["resourceType"],
            id=id_,
            version=version,
            last_updated=now,
            deleted=False,
            content=content,
            method=method,
            custodian=custodian,
            rows=self._indexer.extract(body),
            expected_version=expected,
        )
        try:
            uow.write(new)
        except VersionConflict as exc:
            raise PreconditionFailed(str(exc)) from exc
        if observed:
            for observer in self._observers:
                observer(uow, ctx, new.type, id_, resource)
        return StoredResource(
            type=new.type,
            id=id_,
            version=version,
            last_updated=now,
            deleted=False,
            content=content,
            custodian=custodian,
        )

    def create(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        resource: Mapping[str, Any],
        *,
        id_: str | None = None,
        method: str = "POST",
        observed: bool = True,
    ) -> Written:
        """``observed=False``: the observers are not told (the caller indexes the
        resource itself, as bulk enrolment does for a whole batch)."""
        new_id = id_ or self._new_id()
        stored = self._store(
            uow,
            ctx,
            resource,
            id_=new_id,
            version=1,
            method=method,
            expected=None,
            observed=observed,
        )
        return Written(stored, 201)

    def conditional_create(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        resource: Mapping[str, Any],
        params: Sequence[tuple[str, str]],
        *,
        id_: str | None = None,
    ) -> Written:
        resource_type = resource["resourceType"]
        uow.lock(lock_key(resource_type, params))
        existing = self.match_one(uow, resource_type, params)
        if existing is not None:
            self._guard(uow, ctx, existing, True)
            return Written(existing, 200)
        return self.create(uow, ctx, resource, id_=id_)

    def update(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        resource: Mapping[str, Any],
        id_: str,
        *,
        if_match: int | None = None,
        method: str = "PUT",
    ) -> Written:
        resource_type = resource["resourceType"]
        uow.lock(f"{resource_type}/{id_}")
        current = uow.get(resource_type, id_)
        if current is not None and not current.deleted:
            self._guard(uow, ctx, current, False)
        if if_match is not None:
            if current is None or current.deleted:
                raise PreconditionFailed(
                    f'{resource_type}/{id_} does not exist, so If-Match W/"{if_match}" cannot hold'
                )
            if current.version != if_match:
                raise PreconditionFailed(
                    f"{resource_type}/{id_} is at version {current.version}, not {if_match}",
                    headers={"ETag": f'W/"{current.version}"'},
                )
        if current is None:
            stored = self._store(
                uow, ctx, resource, id_=id_, version=1, method=method, expected=None
            )
            return Written(stored, 201)
        if not current.deleted and same_content(self._plain(current.content), resource):
            # An unchanged resource keeps its version: resent feeds do not churn history.
            return Written(current, 200)
        stored = self._store(
            uow,
            ctx,
            resource,
            id_=id_,
            version=current.version + 1,
            method=method,
            expected=current.version,
            custodian=current.custodian,
        )
        return Written(stored, 201 if current.deleted else 200)

    def conditional_update(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        resource: Mapping[str, Any],
        params: Sequence[tuple[str, str]],
        *,
        if_match: int | None = None,
    ) -> Written:
        resource_type = resource["resourceType"]
        uow.lock(lock_key(resource_type, params))
        existing = self.match_one(uow, resource_type, params)
        if existing is not None:
            self._guard(uow, ctx, existing, True)
        body_id = resource.get("id")
        if existing is None:
            return self.update(uow, ctx, resource, body_id or self._new_id(), if_match=if_match)
        if body_id is not None and body_id != existing.id:
            raise BadRequest.at(
                f"the resource id '{body_id}' differs from the matched {resource_type}/{existing.id}",
                f"{resource_type}.id",
            )
        return self.update(uow, ctx, resource, existing.id, if_match=if_match)

    def patched(
        self,
        uow: UnitOfWork,
        resource_type: str,
        id_: str,
        operations: Any,
        *,
        if_match: int | None,
    ) -> tuple[dict[str, Any], int]:
        """The current resource with a JSON Patch applied (not yet validated or written)."""
        current = uow.get(resource_type, id_)
        if current is None:
            raise NotFound(f"{resource_type}/{id_} is not known")
        if current.deleted:
            raise Conflict(f"{resource_type}/{id_} is deleted and cannot be patched")
        if if_match is not None and current.version != if_match:
            raise PreconditionFailed(
                f"{resource_type}/{id_} is at version {current.version}, not {if_match}",
                headers={"ETag": f'W/"{current.version}"'},
            )
        if not isinstance(operations, list):
            raise BadRequest("a JSON Patch document is a JSON array of operations")
        try:
            result = jsonpatch.JsonPatch(operations).apply(self._plain(current.content))
        except jsonpatch.JsonPatchTestFailed as exc:
            raise Unprocessable(f"JSON Patch test failed: {exc}") from exc
        except (
            jsonpatch.JsonPatchException,
            jsonpatch.JsonPointerException,
            TypeError,
            KeyError,
        ) as exc:
            raise BadRequest(f"JSON Patch cannot be applied: {exc}") from exc
        if not isinstance(result, dict):
            raise Unprocessable("JSON Patch did not produce a resource")
        if result.get("resourceType") != resource_type or result.get("id") != id_:
            raise Unprocessable("JSON Patch may not change resourceType or id")
        return result, current.version

    def delete(self, uow: UnitOfWork, ctx: RequestContext, resource_type: str, id_: str) -> Written:
        uow.lock(f"{resource_type}/{id_}")
        current = uow.get(resource_type, id_)
        if current is None:
            raise NotFound(f"{resource_type}/{id_} is not known")
        if current.deleted:
            return Written(current, 204)
        self._guard(uow, ctx, current, False)
        now = self.now()
        new = NewVersion(
            type=resource_type,
            id=id_,
            version=current.version + 1,
            last_updated=now,
            deleted=True,
            content=b"",
            method="DELETE",
            custodian=current.custodian,
            expected_version=current.version,
        )
        try:
            uow.write(new)
        except VersionConflict as exc:
            raise PreconditionFailed(str(exc)) from exc
        for observer in self._observers:
            observer(uow, ctx, resource_type, id_, None)
        return Written(
            StoredResource(resource_type, id_, new.version, now, True, b"", current.custodian), 204
        )
