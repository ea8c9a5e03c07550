"""An in-memory twin of the SQL store, for fast tests of the exchange.

It honours the CRUD and history part of the contract (tests/hie/storage run one suite
against it, SQLite and PostgreSQL): one writer at a time, readers see only committed
state, and a failed unit of work leaves nothing behind. It keeps each resource's index
rows but does not evaluate searches: search semantics live in the SQL planner and are
tested on SQLite and PostgreSQL (docs/search.md, "The memory twin").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from hie.search.rows import IndexRow, ReferenceRow, TokenRow
from hie.storage.ports import (
    AuditRecord,
    EverythingRequest,
    HistoryQuery,
    IdentityLink,
    NewVersion,
    ReviewItem,
    SearchPage,
    SearchRequest,
    StoredResource,
    VersionConflict,
)


@dataclass
class _State:
    resources: dict[tuple[str, str], tuple[int, StoredResource]] = field(default_factory=dict)
    versions: list[tuple[int, int, StoredResource]] = field(default_factory=list)
    rows: dict[int, tuple[IndexRow, ...]] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    links: dict[str, IdentityLink] = field(default_factory=dict)
    reviews: list[ReviewItem] = field(default_factory=list)
    next_pk: int = 1
    next_seq: int = 1

    def copy(self) -> _State:
        return replace(
            self,
            resources=dict(self.resources),
            versions=list(self.versions),
            rows=dict(self.rows),
            audit=list(self.audit),
            links=dict(self.links),
            reviews=list(self.reviews),
        )


class MemoryIdentityTables:
    """The index tables as dicts (the twin of ``hie.storage.sql.identity``)."""

    def __init__(self, state: _State) -> None:
        self._s = state

    def get(self, source_id: str) -> IdentityLink | None:
        return self._s.links.get(source_id)

    def put(self, link: IdentityLink, *, expected_sealed: str | None = None) -> bool:
        current = self._s.links.get(link.source_id)
        if expected_sealed is not None and (current is None or current.sealed != expected_sealed):
            return False
        self._s.links[link.source_id] = link
        return True

    def remove(self, source_id: str) -> None:
        self._s.links.pop(source_id, None)

    def add_new(self, links: Sequence[IdentityLink]) -> None:
        for link in links:
            self._s.links[link.source_id] = link

    def key_holders(self, keys: Sequence[str]) -> list[tuple[str, IdentityLink]]:
        wanted = set(keys)
        return [
            (key, replace(x, sealed=""))
            for x in self._s.links.values()
            for key in sorted(wanted & set(x.keys))
        ]

    def members(self, enterprise_ids: Sequence[str]) -> list[IdentityLink]:
        wanted = set(enterprise_ids)
        return sorted(
            (x for x in self._s.links.values() if x.enterprise_id in wanted),
            key=lambda x: x.source_id,
        )

    def candidates(self, keys: Sequence[str], limit: int) -> list[str]:
        wanted = set(keys)
        found = {x.enterprise_id for x in self._s.links.values() if wanted & set(x.keys)}
        return sorted(found)[:limit]

    def candidate_members(self, keys: Sequence[str], limit: int) -> list[IdentityLink]:
        return self.members(self.candidates(keys, limit))

    def by_resident_index(self, values: Sequence[str]) -> list[IdentityLink]:
        return [x for x in self._s.links.values() if x.rid_index in values]

    def by_card(self, card_no: str) -> list[IdentityLink]:
        return [x for x in self._s.links.values() if x.card_no == card_no]

    def merged_into(self, enterprise_id: str, merged_from: str) -> list[IdentityLink]:
        return [
            x
            for x in self._s.links.values()
            if x.enterprise_id == enterprise_id and x.merged_from == merged_from
        ]

    def add_review(self, item: ReviewItem) -> int:
        new = replace(item, id=len(self._s.reviews) + 1)
        self._s.reviews.append(new)
        return new.id

    def reviews(self, status: str, limit: int, source_id: str | None = None) -> list[ReviewItem]:
        found = [
            r
            for r in self._s.reviews
            if r.status == status and (source_id is None or r.source_id == source_id)
        ]
        return found[:limit]

    def set_review(self, review_id: int, status: str, decided_by: str | None) -> None:
        item = self._s.reviews[review_id - 1]
        self._s.reviews[review_id - 1] = replace(item, status=status, decided_by=decided_by)

    def scan(self, after: str | None, limit: int) -> list[IdentityLink]:
        ids = sorted(i for i in self._s.links if after is None or i > after)
        return [self._s.links[i] for i in ids[:limit]]

    def count(self) -> int:
        return len(self._s.links)


class MemoryUnitOfWork:
    def __init__(self, state: _State, *, write: bool) -> None:
        self.state = state
        self._write = write

    @property
    def identity(self) -> MemoryIdentityTables:
        return MemoryIdentityTables(self.state)

    def get(self, type_: str, id_: str) -> StoredResource | None:
        found = self.state.resources.get((type_, id_))
        return found[1] if found else None

    def get_version(self, type_: str, id_: str, version: int) -> StoredResource | None:
        for _, _, stored in self.state.versions:
            if stored.type == type_ and stored.id == id_ and stored.version == version:
                return stored
        return None

    def lock(self, key: str) -> None:
        return None  # the store's single writer lock already serialises writers

    def lock_all(self, keys: Sequence[str]) -> None:
        return None

    def write(self, new: NewVersion) -> None:
        if not self._write:
            raise RuntimeError("write in a read-only unit of work")
        state = self.state
        current = state.resources.get((new.type, new.id))
        if new.expected_version is None:
            if current is not None:
                raise VersionConflict(f"{new.type}/{new.id} already exists")
            pk = state.next_pk
            state.next_pk += 1
        else:
            if current is None or current[1].version != new.expected_version:
                raise VersionConflict(
                    f"{new.type}/{new.id} is no longer at version {new.expected_version}"
                )
            pk = current[0]
        stored = StoredResource(
            new.type, new.id, new.version, new.last_updated, new.deleted, new.content, new.custodian
        )
        state.resources[(new.type, new.id)] = (pk, stored)
        state.versions.append((state.next_seq, pk, stored))
        state.next_seq += 1
        state.rows[pk] = tuple(new.rows)

    def search(self, request: SearchRequest) -> SearchPage:
        raise NotImplementedError("the memory twin does not evaluate searches (docs/search.md)")

    def everything(self, request: EverythingRequest) -> SearchPage:
        raise NotImplementedError("the memory twin does not evaluate searches (docs/search.md)")

    def referring(
        self,
        type_: str,
        param: str,
        target_type: str,
        target_ids: Sequence[str],
        marker: str | None = None,
    ) -> list[StoredResource]:
        wanted = set(target_ids)
        out = []
        for (rtype, _), (pk, stored) in sorted(self.state.resources.items()):
            rows = self.state.rows.get(pk, ())
            if rtype != type_ or stored.deleted:
                continue
            points = any(
                isinstance(r, ReferenceRow)
                and r.param == param
                and r.target_type == target_type
                and r.target_id in wanted
                for r in rows
            )
            marked = marker is None or any(
                isinstance(r, TokenRow) and r.param == marker for r in rows
            )
            if points and marked:
                out.append(stored)
        return out

    def token_values(self, type_: str, param: str) -> list[tuple[str, StoredResource]]:
        found: dict[str, StoredResource] = {}
        for (rtype, _), (pk, stored) in sorted(self.state.resources.items()):
            if rtype != type_ or stored.deleted:
                continue
            for row in self.state.rows.get(pk, ()):
                if isinstance(row, TokenRow) and row.param == param:
                    found.setdefault(row.code, stored)
        return sorted(found.items())

    def _current(self, type_: str | None) -> list[tuple[int, StoredResource]]:
        return sorted(
            (pk, stored)
            for (rtype, _), (pk, stored) in self.state.resources.items()
            if not stored.deleted and (type_ is None or rtype == type_)
        )

    def scan(
        self, type_: str | None, after: int | None, limit: int
    ) -> list[tuple[int, StoredResource]]:
        rows = [item for item in self._current(type_) if after is None or item[0] > after]
        return rows[:limit]

    def count(self, type_: str | None) -> int:
        return len(self._current(type_))

    def reindex(self, key: int, rows: Sequence[IndexRow]) -> None:
        if not self._write:
            raise RuntimeError("write in a read-only unit of work")
        if key not in self.state.rows and all(pk != key for pk, _ in self.state.resources.values()):
            raise KeyError(f"no resource is stored under key {key}")
        self.state.rows[key] = tuple(rows)

    def index_rows(self, key: int) -> tuple[IndexRow, ...]:
        """The index rows kept for a resource (for tests)."""
        return self.state.rows.get(key, ())

    def _history(self, query: HistoryQuery) -> list[tuple[int, StoredResource]]:
        out = []
        for seq, _, stored in self.state.versions:
            if query.type is not None and stored.type != query.type:
                continue
            if query.id is not None and stored.id != query.id:
                continue
            if query.since is not None and stored.last_updated < query.since:
                continue
            out.append((seq, stored))
        out.sort(key=lambda item: item[0], reverse=True)
        return out

    def history(self, query: HistoryQuery) -> list[tuple[int, StoredResource]]:
        rows = self._history(query)
        if query.before_seq is not None:
            rows = [r for r in rows if r[0] < query.before_seq]
        return rows[: query.count]

    def count_history(self, query: HistoryQuery) -> int:
        return len(self._history(query))

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        if not self._write:
            raise RuntimeError("write in a read-only unit of work")
        self.state.audit.extend(records)


class MemoryStore:
    def __init__(self) -> None:
        self._state = _State()
        self._writer = threading.Lock()

    @contextmanager
    def unit_of_work(self, *, write: bool) -> Iterator[MemoryUnitOfWork]:
        if not write:
            yield MemoryUnitOfWork(self._state, write=False)
            return
        with self._writer:
            uow = MemoryUnitOfWork(self._state.copy(), write=True)
            yield uow
            self._state = uow.state  # commit: publish the new state in one assignment

    def lookup(self, type_: str, id_: str, version: int | None = None) -> StoredResource | None:
        uow = MemoryUnitOfWork(self._state, write=False)
        return uow.get(type_, id_) if version is None else uow.get_version(type_, id_, version)

    def enterprise_link(self, source_id: str) -> tuple[str, StoredResource | None] | None:
        link = self._state.links.get(source_id)
        if link is None:
            return None
        return link.enterprise_id, self.lookup("Patient", link.enterprise_id)

    @property
    def audit(self) -> list[AuditRecord]:
        return list(self._state.audit)

    def close(self) -> None:
        return None
