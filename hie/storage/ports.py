"""The storage port: what the exchange needs from a store, and nothing more.

Stores keep the current version and the full history of every resource, with one id
space per resource type. Content is canonical JSON bytes, written once and served as is.
A unit of work is one database transaction; store functions never commit on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored. ``content`` is empty for a deletion."""

    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: bytes
    custodian: str | None = None


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token search-index row (``system|code``) for one search parameter."""

    param: str
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A version to write. ``expected_version`` guards against lost updates (None: create)."""

    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: bytes
    method: str
    custodian: str | None = None
    tokens: Sequence[TokenRow] = ()
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class IdCriterion:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenCriterion:
    """Matches when any row of ``param`` matches any of the (system, code) alternatives.

    ``None`` means "any"; an empty-string system means "no system" (``|code``).
    """

    param: str
    alternatives: tuple[tuple[str | None, str | None], ...]


Criterion = IdCriterion | TokenCriterion


@dataclass(frozen=True, slots=True)
class Page:
    """Keyset position: results strictly after ``after`` in the query's order."""

    count: int
    after: int | None = None


@dataclass(frozen=True, slots=True)
class Found:
    items: list[tuple[int, StoredResource]]
    total: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    type: str | None = None
    id: str | None = None
    since: datetime | None = None
    before_seq: int | None = None
    count: int = 50


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A plain record of one access (the consent-and-audit work turns these into AuditEvents)."""

    recorded: datetime
    actor: str
    organization: str | None
    purpose: str | None
    action: str
    outcome: str
    resource_type: str | None = None
    resource_id: str | None = None
    query: str | None = None
    source: str | None = None
    detail: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class VersionConflict(Exception):
    """The current version is not the one the write expected (a concurrent writer won)."""


class UnitOfWork(Protocol):
    def get(self, type_: str, id_: str) -> StoredResource | None:
        """The current version (a deletion included), or None if never written."""

    def get_version(self, type_: str, id_: str, version: int) -> StoredResource | None: ...

    def lock(self, key: str) -> None:
        """Serialise writers that use the same key until this unit of work ends.

        Conditional create and update take this lock on their criteria, so parallel
        requests with the same identifier cannot both create.
        """

    def write(self, new: NewVersion) -> None:
        """Write a version; raise VersionConflict if ``expected_version`` is stale."""

    def find(
        self, type_: str, criteria: Sequence[Criterion], page: Page, *, with_total: bool
    ) -> Found:
        """Current, not-deleted resources matching all criteria, ordered by storage key."""

    def history(self, query: HistoryQuery) -> list[tuple[int, StoredResource]]:
        """Versions newest first, each with its global sequence number."""

    def count_history(self, query: HistoryQuery) -> int: ...

    def append_audit(self, records: Sequence[AuditRecord]) -> None: ...


class Store(Protocol):
    def unit_of_work(self, *, write: bool) -> AbstractContextManager[UnitOfWork]:
        """A transaction: committed when the block ends normally, rolled back on error."""

    def lookup(self, type_: str, id_: str, version: int | None = None) -> StoredResource | None:
        """One version (the current one if ``version`` is None) outside any unit of work.

        A single-row read is consistent on its own; skipping the transaction keeps the
        hottest path of the exchange (instance read) to one statement.
        """

    def close(self) -> None: ...
