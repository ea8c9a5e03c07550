"""What exchange operations return. Resources stay as stored bytes all the way out."""

from __future__ import annotations

from dataclasses import dataclass, field

from hie.errors import Issue
from hie.search.query import Summary
from hie.storage.ports import StoredResource


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of create, update, patch or delete."""

    stored: StoredResource
    status: int
    issues: tuple[Issue, ...] = ()

    @property
    def created(self) -> bool:
        return self.status == 201


@dataclass(frozen=True, slots=True)
class SearchResult:
    resource_type: str
    entries: list[StoredResource]
    total: int | None
    next_cursor: str | None
    params: list[tuple[str, str]]
    warnings: list[Issue] = field(default_factory=list)
    summary_count: bool = False
    included: list[StoredResource] = field(default_factory=list)
    previous_cursor: str | None = None
    path: str = ""  # the URL path links repeat ("Patient/1/$everything"); "" is the type
    summary: Summary | None = None
    elements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    stored: StoredResource
    method: str


@dataclass(frozen=True, slots=True)
class HistoryResult:
    entries: list[StoredResource]
    total: int | None  # None: not given (it would reveal hidden versions)
    next_cursor: str | None
    params: list[tuple[str, str]]
