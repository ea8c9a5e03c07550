"""The storage port: what the exchange needs from a store, and nothing more.

Stores keep the current version and the full history of every resource, with one id
space per resource type. Content is canonical JSON bytes, written once and served as is.
A unit of work is one database transaction; store functions never commit on their own.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from hie.search.query import SearchQuery
from hie.search.rows import IndexRow


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
class NewVersion:
    """A version to write. ``expected_version`` guards against lost updates (None: create).

    ``rows`` are the search-index rows of the content (``hie.search.extract``); they
    replace the resource's previous rows. A deletion has none.
    """

    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: bytes
    method: str
    custodian: str | None = None
    rows: Sequence[IndexRow] = ()
    expected_version: int | None = None


# -- search ------------------------------------------------------------------------

SortValue = int | str | Decimal | None


Code = tuple[str, str]  # (system, code) of a Coding


@dataclass(frozen=True, slots=True)
class Criteria:
    """Which resources a consent provision speaks of; None places no condition.

    ``labels``: the resource carries one of these ``meta.security`` codings;
    ``codes``: its ``code`` search parameter holds one of these codings;
    ``data_period``: its clinical date (``Visibility.clinical_dates``) lies within
    ``(low, high)`` (epoch microseconds, inclusive), or it has none and ``undated``
    (a deny's period covers what cannot be shown to lie outside it);
    ``data``: it is one of these resources (``(type, id, "instance")``) or refers to one
    of them (``(type, id, "dependents")``);
    ``custodians``: its custodian is one of these Organizations (or it has none and
    ``undated``: a deny covers what the exchange derived from several sources).
    """

    types: frozenset[str] | None = None
    labels: frozenset[Code] | None = None
    codes: frozenset[Code] | None = None
    data_period: tuple[int, int] | None = None
    undated: bool = False
    data: frozenset[tuple[str, str, str]] | None = None
    custodians: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Region:
    """What a provision covers: every one of its ``criteria`` (its own and its parents')
    and none of its nested ``exceptions``. A permit region covers a sensitive resource
    only when it ``names`` every sensitive coding the resource has."""

    criteria: tuple[Criteria, ...] = ()
    exceptions: tuple[Criteria, ...] = ()
    names: frozenset[Code] = frozenset()


@dataclass(frozen=True, slots=True)
class PatientRegion:
    """A region over the records (patient compartments) of ``patients``, and of the
    patients of every current Consent whose ``shape_param`` token is one of ``shapes``."""

    patients: frozenset[str]
    region: Region
    shapes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Visibility:
    """What the caller may see, applied by the store inside the query, before paging,
    counting and includes: hidden resources never take a place on a page or in a total.

    This is the seam for the consent decision point. Everything the decision can say
    as a filter goes here: resources held by ``hidden_custodians`` (``Organization/x``)
    or carrying a security label in ``hidden_labels`` (``(system, code)``) are removed.

    When ``restricted``, resources of the ``patient_data`` types (the Patient
    compartment: ``compartment`` maps each type to its patient reference parameters) are
    visible only if held by one of ``own`` custodians, or covered by a ``permits``
    region and by no ``denies`` region. A resource is sensitive when it carries one
    of ``sensitive_labels`` or one of ``sensitive_codes``. The empty default hides nothing.
    """

    hidden_custodians: frozenset[str] = frozenset()
    hidden_labels: frozenset[tuple[str, str]] = frozenset()
    restricted: bool = False
    own: frozenset[str] = frozenset()
    patient_data: frozenset[str] = frozenset()
    compartment: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    permits: tuple[PatientRegion, ...] = ()
    denies: tuple[PatientRegion, ...] = ()
    sensitive_labels: frozenset[Code] = frozenset()
    sensitive_codes: frozenset[Code] = frozenset()
    shape_param: str = ""
    # The date search parameter that dates each type's records (consent dataPeriod).
    clinical_dates: Mapping[str, str] = field(default_factory=dict)

    @property
    def everything(self) -> bool:
        return not self.hidden_custodians and not self.hidden_labels and not self.restricted


@dataclass(frozen=True, slots=True)
class Cursor:
    """A keyset position: the sort values and storage key of a page's boundary resource.

    ``before`` False: the page after the boundary (a next link); True: the page before it
    (a previous link). Stores never use OFFSET, so concurrent writes cannot make a
    page skip or repeat a resource whose sort values did not change.
    """

    values: tuple[SortValue, ...]
    key: int
    before: bool = False


@dataclass(frozen=True, slots=True)
class Compartment:
    """The patient compartment of ``patient_ids`` (one patient, or every source patient
    an enterprise identity links). ``params``: resource type -> the reference parameters
    that place a resource of that type in the compartment (R4 CompartmentDefinition)."""

    patient_ids: frozenset[str]
    params: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: SearchQuery
    count: int  # page size; 0 asks only for the total
    cursor: Cursor | None = None
    total: bool = False  # count every match (after visibility); a complete first page always does
    estimate: bool = False  # a planner estimate is good enough for the total
    compartment: Compartment | None = None
    visibility: Visibility = field(default_factory=Visibility)
    now: datetime | None = None  # for ``ap`` on dates (None: the store's clock)
    max_includes: int = 1000


@dataclass(frozen=True, slots=True)
class EverythingRequest:
    """``Patient/[id]/$everything``: the compartment plus the resources its members refer
    to whose types are outside every patient compartment (Practitioner, Organization,
    Location, Medication...), ordered by storage key."""

    compartment: Compartment
    count: int
    types: frozenset[str] = frozenset()  # empty: every type
    since: datetime | None = None
    cursor: Cursor | None = None
    total: bool = False
    visibility: Visibility = field(default_factory=Visibility)


@dataclass(frozen=True, slots=True)
class SearchPage:
    items: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next: Cursor | None = None
    previous: Cursor | None = None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    type: str | None = None
    id: str | None = None
    since: datetime | None = None
    before_seq: int | None = None
    count: int = 50


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One access, as an AuditEvent to append to the audit chain (``hie.audit.event``).

    ``content`` is the AuditEvent's canonical JSON without ``id``: the store numbers it
    (``seq``) and chains it. The other fields are search keys derived from it.
    """

    recorded: datetime
    content: bytes
    type: str
    subtype: str
    action: str
    outcome: str
    agent: str
    organization: str | None = None
    purpose: str | None = None
    break_glass: bool = False
    patients: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()


GENESIS = bytes(32)


_LINK_HEAD = struct.Struct(">Qq").pack


def chain_hash(prev: bytes, seq: int, recorded_us: int, content: bytes) -> bytes:
    """SHA-256 over the previous record's hash, this record's number, time and bytes.

    The number is inside the hash, so moving a record to another place breaks the chain.
    """
    return hashlib.sha256(prev + _LINK_HEAD(seq, recorded_us) + content).digest()


@dataclass(frozen=True, slots=True)
class StoredAudit:
    seq: int
    recorded: datetime
    content: bytes
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signature over the chain's hash at ``seq``: rewriting the chain up to it shows."""

    seq: int
    hash: bytes
    signed: datetime
    key_id: str
    signature: bytes


# (seq, recorded_us, content, prev_hash, hash), as verification reads them
ChainLink = tuple[int, int, bytes, bytes, bytes]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A search of the audit trail, newest first. Unset fields do not filter."""

    patient: str | None = None
    agent: str | None = None
    entity: str | None = None
    type: str | None = None
    subtype: str | None = None
    action: str | None = None
    outcome: str | None = None
    purpose: str | None = None
    organization: str | None = None
    break_glass: bool | None = None
    recorded_from: datetime | None = None  # inclusive
    recorded_to: datetime | None = None  # exclusive
    before_seq: int | None = None
    count: int = 50


class AuditLog(Protocol):
    """The audit trail, stored apart from clinical data (its own tables or database)."""

    def append(
        self, records: Sequence[AuditRecord], *, drained: Mapping[str, int] | None = None
    ) -> None:
        """Chain and store in one transaction of its own; raise if that fails.

        ``drained``: journals (by name) drained up to these offsets by this append,
        committed with it (``hie.audit.journal``)."""

    def drained(self, journals: Sequence[str]) -> dict[str, int]:
        """How far each of these journals has been drained (absent: not at all)."""

    def forget(self, journals: Sequence[str]) -> None:
        """Drop the drained offsets of these journals: drained to their end and deleted,
        they will never be read again."""

    def search(self, query: AuditQuery) -> list[StoredAudit]: ...

    def get(self, seq: int) -> StoredAudit | None: ...

    def links(self, after: int = 0) -> Iterator[Sequence[ChainLink]]:
        """Every record after ``after`` in chain order, in batches (for verification)."""

    def checkpoints(self) -> list[Checkpoint]: ...

    def close(self) -> None: ...


class AuditFailure(Exception):
    """A unit of work's audit records could not be written: the access must be refused."""


# -- master patient index -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """One source Patient's place in the master patient index.

    ``sealed`` holds the matcher's view of the record (names, birth date, phone, resident
    ID number...) encrypted as one AES-GCM envelope; ``rid_index`` is the blind index of its
    resident ID number and ``keys`` its blocking keys (identifier parts blind-indexed).
    ``status``: ``auto`` (the matcher linked it), ``provisional`` (a possible match waiting
    for review), ``manual`` (a person decided), ``merged`` (an HL7 A40 merge decided); the
    matcher only ever moves ``auto`` and ``provisional`` links.
    """

    source_id: str
    enterprise_id: str
    source: str
    sealed: str
    status: str
    score: float = 0.0
    reason: str = ""
    rid_index: str | None = None
    card_no: str | None = None
    merged_from: str | None = None
    updated: datetime | None = None
    keys: tuple[str, ...] = ()
    rid_valid: bool | None = None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A possible match waiting for a person: link ``source_id`` to ``enterprise_id``?"""

    id: int
    source_id: str
    enterprise_id: str
    score: float
    reason: str
    created: datetime
    status: str = "open"  # open, accepted, rejected, superseded
    decided_by: str | None = None


class IdentityTables(Protocol):
    """The index's own tables, inside the unit of work that writes the Patient."""

    def get(self, source_id: str) -> IdentityLink | None: ...

    def put(self, link: IdentityLink, *, expected_sealed: str | None = None) -> bool:
        """Insert or replace the link and its blocking keys. With ``expected_sealed``,
        only if the stored record is still that one (key rotation beside live writes);
        returns whether it was written."""

    def remove(self, source_id: str) -> None: ...

    def add_new(self, links: Sequence[IdentityLink]) -> None:
        """Insert links (and their blocking keys) of source records not yet in the index,
        many at once (bulk enrolment)."""

    def key_holders(self, keys: Sequence[str]) -> list[tuple[str, IdentityLink]]:
        """(key, link without its sealed record) for every source record holding one of
        ``keys``: what bulk enrolment decides on without opening records."""

    def members(self, enterprise_ids: Sequence[str]) -> list[IdentityLink]: ...

    def candidates(self, keys: Sequence[str], limit: int) -> list[str]:
        """Enterprise ids of records sharing any blocking key (at most ``limit``)."""

    def candidate_members(self, keys: Sequence[str], limit: int) -> list[IdentityLink]:
        """``members(candidates(keys, limit))`` in one read."""

    def by_resident_index(self, values: Sequence[str]) -> list[IdentityLink]: ...

    def by_card(self, card_no: str) -> list[IdentityLink]: ...

    def merged_into(self, enterprise_id: str, merged_from: str) -> list[IdentityLink]: ...

    def add_review(self, item: ReviewItem) -> int: ...

    def reviews(self, status: str, limit: int, source_id: str | None = None) -> list[ReviewItem]:
        """Oldest first."""

    def set_review(self, review_id: int, status: str, decided_by: str | None) -> None: ...

    def scan(self, after: str | None, limit: int) -> list[IdentityLink]:
        """Links by source id (for key rotation)."""

    def count(self) -> int: ...


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

    def lock_all(self, keys: Sequence[str]) -> None:
        """``lock`` every key, in the order given (one round trip where a database needs one)."""

    def write(self, new: NewVersion) -> None:
        """Write a version; raise VersionConflict if ``expected_version`` is stale."""

    def search(self, request: SearchRequest) -> SearchPage:
        """Current, not-deleted, visible resources matching the query, one page in the
        query's order (storage key last), with its includes and keyset cursors."""

    def everything(self, request: EverythingRequest) -> SearchPage:
        """One page of a patient compartment and what it refers to (``$everything``)."""

    def scan(
        self, type_: str | None, after: int | None, limit: int
    ) -> list[tuple[int, StoredResource]]:
        """Current, not-deleted resources by storage key (for ``hie search reindex``)."""

    def count(self, type_: str | None) -> int:
        """How many current, not-deleted resources there are (of a type, or in all)."""

    def reindex(self, key: int, rows: Sequence[IndexRow]) -> None:
        """Replace the search-index rows of the resource stored under ``key``."""

    def history(self, query: HistoryQuery) -> list[tuple[int, StoredResource]]:
        """Versions newest first, each with its global sequence number."""

    def count_history(self, query: HistoryQuery) -> int: ...

    def referring(
        self,
        type_: str,
        param: str,
        target_type: str,
        target_ids: Sequence[str],
        marker: str | None = None,
    ) -> list[StoredResource]:
        """Current ``type_`` resources whose reference ``param`` points to one of
        ``target_ids`` (and, given a ``marker``, that have a token row of that
        parameter: a Consent's shape)."""

    def token_values(self, type_: str, param: str) -> list[tuple[str, StoredResource]]:
        """Each distinct code of a token index row (``param`` of ``type_``), with one
        current resource holding it (for consent shapes)."""

    def append_audit(self, records: Sequence[AuditRecord]) -> None: ...

    @property
    def identity(self) -> IdentityTables:
        """The master patient index's tables, in this transaction."""


class Store(Protocol):
    def unit_of_work(self, *, write: bool) -> AbstractContextManager[UnitOfWork]:
        """A transaction: committed when the block ends normally, rolled back on error."""

    def lookup(self, type_: str, id_: str, version: int | None = None) -> StoredResource | None:
        """One version (the current one if ``version`` is None) outside any unit of work.

        A single-row read is consistent on its own; skipping the transaction keeps the
        hottest path of the exchange (instance read) to one statement.
        """

    def enterprise_link(self, source_id: str) -> tuple[str, StoredResource | None] | None:
        """The enterprise id a source Patient is linked to in the master patient index,
        with that enterprise Patient's current version, in one read outside any unit of
        work (card readers' hot path); None if the source is not linked."""

    def close(self) -> None: ...
