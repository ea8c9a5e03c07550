"""The durable inbox: every framed message's raw bytes, stored before any ACK.

States::

    received ──worker──▶ mapped
        │    └─────────▶ failed ──replay──▶ received
    rejected   (answered AE/AR at intake, or a conflicting duplicate; kept for review)

Duplicates: (sender, MSH-10) is unique among accepted rows. An identical re-send is not
stored again; it is answered with the ACK stored for the original. A re-send with different
bytes is stored as ``rejected`` with ``duplicate_of`` pointing at the original.

Ordering: a worker may claim a row only when no earlier row for the same patient is still
``received``, so one patient's messages are applied in arrival order even with many
workers. Claims take a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises
writers with ``BEGIN IMMEDIATE``), so a crashed worker's rows come back when it expires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from adapters.hl7v2.db import Base, writer_gate

State = Literal["received", "mapped", "failed", "rejected"]
STATES: tuple[State, ...] = ("received", "mapped", "failed", "rejected")
_ACCEPTED = "state != 'rejected'"


class InboxRow(Base):
    __tablename__ = "hl7_inbox"
    __table_args__ = (
        Index(
            "uq_hl7_inbox_sender_control",
            "sender_id",
            "control_id",
            unique=True,
            sqlite_where=text(_ACCEPTED),
            postgresql_where=text(_ACCEPTED),
        ),
        Index("ix_hl7_inbox_state_id", "state", "id"),
        Index("ix_hl7_inbox_patient", "patient_key", "state", "id"),
        CheckConstraint("state IN ('received', 'mapped', 'failed', 'rejected')", name="state"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    peer: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("hl7_sender.id"))
    sending_application: Mapped[str] = mapped_column(String(227))
    sending_facility: Mapped[str] = mapped_column(String(227))
    control_id: Mapped[str] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(16))
    charset: Mapped[str | None] = mapped_column(String(32))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    ack_code: Mapped[str] = mapped_column(String(2))
    ack: Mapped[bytes] = mapped_column(LargeBinary)
    app_ack_mode: Mapped[str | None] = mapped_column(String(2))
    app_ack: Mapped[bytes | None] = mapped_column(LargeBinary)
    app_ack_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    patient_key: Mapped[str | None] = mapped_column(String(255))
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("hl7_inbox.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


_T: Table = InboxRow.__table__  # type: ignore[assignment]


def digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


ConflictAnswer = Callable[[int], tuple[bytes, str, str]]
"""Given the original's inbox id: (ACK bytes, ACK code, error text) for a conflicting re-send."""


@dataclass(slots=True)
class NewMessage:
    """A message about to be stored, with the ACK it will get."""

    raw: bytes
    peer: str
    channel: str
    received_at: datetime
    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    version: str
    charset: str | None
    sender_id: int | None
    state: State
    ack_code: str
    ack: bytes
    error: str | None = None
    patient_key: str | None = None
    app_ack_mode: str | None = None
    app_ack: bytes | None = None
    on_conflict: ConflictAnswer | None = None
    digest: bytes = field(default=b"")

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = digest(self.raw)

    def row(self) -> dict[str, Any]:
        return {
            "received_at": self.received_at,
            "peer": self.peer[:128],
            "channel": self.channel,
            "sender_id": self.sender_id,
            "sending_application": self.sending_application[:227],
            "sending_facility": self.sending_facility[:227],
            "control_id": self.control_id[:199],
            "message_type": self.message_type[:32],
            "version": self.version[:16],
            "charset": self.charset,
            "digest": self.digest,
            "raw": self.raw,
            "state": self.state,
            "error": self.error,
            "ack_code": self.ack_code,
            "ack": self.ack,
            "app_ack_mode": self.app_ack_mode,
            "app_ack": self.app_ack,
            "patient_key": self.patient_key,
            "duplicate_of": None,
            "attempts": 0,
        }


Outcome = Literal["stored", "duplicate", "conflict"]


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What happened to one message: ``ack`` is what the sender must get."""

    outcome: Outcome
    ack: bytes
    id: int | None
    original_id: int | None = None


@dataclass(frozen=True)
class InboxEntry:
    id: int
    received_at: datetime
    peer: str
    channel: str
    sender_id: int | None
    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    version: str
    charset: str | None
    state: str
    error: str | None
    ack_code: str
    attempts: int
    patient_key: str | None
    duplicate_of: int | None
    processed_at: datetime | None
    app_ack_mode: str | None
    raw: bytes

    @classmethod
    def from_mapping(cls, m: Any) -> InboxEntry:
        return cls(
            id=m["id"],
            received_at=_aware(m["received_at"]),
            peer=m["peer"],
            channel=m["channel"],
            sender_id=m["sender_id"],
            sending_application=m["sending_application"],
            sending_facility=m["sending_facility"],
            control_id=m["control_id"],
            message_type=m["message_type"],
            version=m["version"],
            charset=m["charset"],
            state=m["state"],
            error=m["error"],
            ack_code=m["ack_code"],
            attempts=m["attempts"],
            patient_key=m["patient_key"],
            duplicate_of=m["duplicate_of"],
            processed_at=_aware(m["processed_at"]) if m["processed_at"] else None,
            app_ack_mode=m["app_ack_mode"],
            raw=bytes(m["raw"]),
        )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_ENTRY_COLUMNS = [
    _T.c[name]
    for name in (
        "id",
        "received_at",
        "peer",
        "channel",
        "sender_id",
        "sending_application",
        "sending_facility",
        "control_id",
        "message_type",
        "version",
        "charset",
        "state",
        "error",
        "ack_code",
        "attempts",
        "patient_key",
        "duplicate_of",
        "processed_at",
        "app_ack_mode",
        "raw",
    )
]


class InboxError(RuntimeError):
    """The inbox could not store or update a message."""


class RawCipher(Protocol):
    """Seals raw messages at rest (they carry resident ID and phone numbers)."""

    def seal(self, raw: bytes) -> bytes: ...

    def open(self, stored: bytes) -> bytes: ...


class Inbox:
    """Durable storage of inbound messages and their processing state.

    With ``raw_cipher`` the raw bytes are stored sealed (``Exchange.raw_sealer``) and
    opened when read; the digest that detects resends is taken from the plain bytes.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime] | None = None,
        *,
        keep_connection: bool = False,
        raw_cipher: RawCipher | None = None,
    ) -> None:
        self.engine = engine
        self._cipher = raw_cipher
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pg = engine.dialect.name == "postgresql"
        self._sqlite = engine.dialect.name == "sqlite"
        self._sql = _HotSql(engine)
        self._gate = writer_gate(engine)
        # With keep_connection (the listener's inbox) intake keeps its DB-API connection:
        # a pool checkout per batch costs more than the insert. One batch at a time uses it.
        self._keep = keep_connection
        self._writer: Any = None
        self._writer_lock = threading.Lock()

    def now(self) -> datetime:
        return self._clock()

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A write transaction, queued with every other writer of a SQLite database."""
        with self._gate(), self.engine.begin() as conn:
            yield conn

    # -- intake ------------------------------------------------------------------------------

    def store(self, message: NewMessage) -> StoreResult:
        return self.store_batch([message])[0]

    def store_batch(self, messages: Sequence[NewMessage]) -> list[StoreResult]:
        """Store messages in one transaction (one fsync): the group commit's unit.

        The unique index decides duplicates (``INSERT ... ON CONFLICT DO NOTHING``), so
        concurrent listeners on several nodes cannot both store one (sender, MSH-10).
        This runs for every message, so it talks to the DB-API connection directly.
        """
        out: list[StoreResult] = []
        if not self._keep:
            conn = self.engine.raw_connection()
            try:
                with self._gate():
                    self._store(conn, messages, out)
            finally:
                conn.close()
            return out
        with self._writer_lock, self._gate():
            if self._writer is None:
                self._writer = self.engine.raw_connection()
            conn = self._writer
            try:
                self._store(conn, messages, out)
            except BaseException:
                # A broken connection (a restarted server) is replaced on the next batch.
                self._writer = None
                with contextlib.suppress(Exception):
                    conn.invalidate()
                raise
        return out

    def _store(self, conn: Any, messages: Sequence[NewMessage], out: list[StoreResult]) -> None:
        sql = self._sql
        cur = conn.cursor()
        try:
            if self._sqlite:
                cur.execute("BEGIN IMMEDIATE")
            for m in messages:
                row = self._sealed(m.row())
                new_id = sql.insert(cur, row, on_conflict_nothing=m.state != "rejected")
                if new_id is not None:
                    out.append(StoreResult("stored", m.ack, new_id))
                    continue
                prior_id, prior_digest, prior_ack = sql.prior(cur, m.sender_id, m.control_id)
                if prior_digest == m.digest:
                    out.append(StoreResult("duplicate", prior_ack, None, prior_id))
                    continue
                conflict = self._sealed(self._conflict_row(m, prior_id))
                conflict_id = sql.insert(cur, conflict, on_conflict_nothing=False)
                assert conflict_id is not None
                out.append(StoreResult("conflict", conflict["ack"], conflict_id, prior_id))
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            cur.close()

    def close(self) -> None:
        """Return the intake's connection to the pool."""
        with self._writer_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _sealed(self, row: dict[str, Any]) -> dict[str, Any]:
        if self._cipher is not None:
            row["raw"] = self._cipher.seal(row["raw"])
        return row

    def _opened(self, entry: InboxEntry) -> InboxEntry:
        if self._cipher is None:
            return entry
        return dataclasses.replace(entry, raw=self._cipher.open(entry.raw))

    @staticmethod
    def _conflict_row(m: NewMessage, prior_id: int) -> dict[str, Any]:
        row = m.row()
        row["state"] = "rejected"
        row["duplicate_of"] = prior_id
        if m.on_conflict is not None:
            ack, code, error = m.on_conflict(prior_id)
            row.update(ack=ack, ack_code=code, error=error)
        else:
            row.update(error=f"control id {m.control_id!r} reused with different content")
        return row

    # -- workers -----------------------------------------------------------------------------

    def claim(self, worker: str, limit: int = 16, lease_seconds: float = 300.0) -> list[InboxEntry]:
        """Lease up to ``limit`` received rows, oldest first, keeping each patient in order.

        A row is taken only when every earlier ``received`` row of its patient is taken in
        the same claim; the worker then processes its rows in id order.
        """
        now = self.now()
        query = (
            select(*_ENTRY_COLUMNS)
            .where(
                _T.c.state == "received",
                or_(_T.c.lease_until.is_(None), _T.c.lease_until < now),
            )
            .order_by(_T.c.id)
            .limit(limit)
        )
        if self._pg:
            query = query.with_for_update(skip_locked=True)
        with self._begin() as conn:
            rows = conn.execute(query).mappings().all()
            if not rows:
                return []
            keys = {r["patient_key"] for r in rows if r["patient_key"] is not None}
            pending: dict[str, list[int]] = {}
            if keys:
                last = rows[-1]["id"]
                for other in conn.execute(
                    select(_T.c.id, _T.c.patient_key).where(
                        _T.c.state == "received",
                        _T.c.patient_key.in_(sorted(keys)),
                        _T.c.id <= last,
                    )
                ):
                    pending.setdefault(other.patient_key, []).append(other.id)
            taken: set[int] = set()
            chosen = []
            for r in rows:
                key = r["patient_key"]
                if key is not None and any(
                    i < r["id"] and i not in taken for i in pending.get(key, ())
                ):
                    continue
                taken.add(r["id"])
                chosen.append(r)
            if not chosen:
                return []
            conn.execute(
                update(_T)
                .where(_T.c.id.in_([r["id"] for r in chosen]))
                .values(lease_owner=worker, lease_until=now + timedelta(seconds=lease_seconds))
            )
        return [self._opened(InboxEntry.from_mapping(r)) for r in chosen]

    def retry_later(self, entry_id: int, worker: str, error: str, delay_seconds: float) -> bool:
        """A transient failure: keep the row received, hidden from claims for a while."""
        with self._begin() as conn:
            result = conn.execute(
                update(_T)
                .where(_T.c.id == entry_id, _T.c.lease_owner == worker, _T.c.state == "received")
                .values(
                    error=error,
                    attempts=_T.c.attempts + 1,
                    lease_owner=None,
                    lease_until=self.now() + timedelta(seconds=delay_seconds),
                )
            )
            return bool(result.rowcount)

    def finish(
        self,
        entry_id: int,
        worker: str,
        state: Literal["mapped", "failed"],
        error: str | None = None,
        app_ack: bytes | None = None,
    ) -> bool:
        """Record a worker's result; False when the lease was lost to another worker."""
        with self._begin() as conn:
            result = conn.execute(
                update(_T)
                .where(_T.c.id == entry_id, _T.c.lease_owner == worker, _T.c.state == "received")
                .values(
                    state=state,
                    error=error,
                    app_ack=app_ack,
                    processed_at=self.now(),
                    attempts=_T.c.attempts + 1,
                    lease_owner=None,
                    lease_until=None,
                )
            )
            return bool(result.rowcount)

    def finish_many(self, worker: str, results: Sequence[tuple[int, bytes | None]]) -> list[bool]:
        """Mark rows mapped (each with its application ACK, if any) in one commit; for each,
        False when its lease was lost to another worker."""
        if not results:
            return []
        now = self.now()
        done = []
        with self._begin() as conn:
            for entry_id, app_ack in results:
                result = conn.execute(
                    update(_T)
                    .where(
                        _T.c.id == entry_id, _T.c.lease_owner == worker, _T.c.state == "received"
                    )
                    .values(
                        state="mapped",
                        error=None,
                        app_ack=app_ack,
                        processed_at=now,
                        attempts=_T.c.attempts + 1,
                        lease_owner=None,
                        lease_until=None,
                    )
                )
                done.append(bool(result.rowcount))
        return done

    def release(self, entry_ids: Iterable[int], worker: str) -> None:
        """Give rows back unprocessed (a stopping worker)."""
        ids = list(entry_ids)
        if not ids:
            return
        with self._begin() as conn:
            conn.execute(
                update(_T)
                .where(_T.c.id.in_(ids), _T.c.lease_owner == worker)
                .values(lease_owner=None, lease_until=None)
            )

    # -- operations --------------------------------------------------------------------------

    def get(self, entry_id: int) -> InboxEntry | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(*_ENTRY_COLUMNS).where(_T.c.id == entry_id)).mappings().first()
            )
        return self._opened(InboxEntry.from_mapping(row)) if row is not None else None

    def stored_ack(self, entry_id: int) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_T.c.ack).where(_T.c.id == entry_id)).first()
        return bytes(row[0]) if row is not None else None

    def entries(
        self,
        states: Iterable[str] = STATES,
        limit: int = 100,
        sender_id: int | None = None,
        after_id: int = 0,
    ) -> list[InboxEntry]:
        query = (
            select(*_ENTRY_COLUMNS)
            .where(_T.c.state.in_(list(states)), _T.c.id > after_id)
            .order_by(_T.c.id)
            .limit(limit)
        )
        if sender_id is not None:
            query = query.where(_T.c.sender_id == sender_id)
        with self.engine.connect() as conn:
            return [
                self._opened(InboxEntry.from_mapping(r)) for r in conn.execute(query).mappings()
            ]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_T.c.state, func.count()).group_by(_T.c.state)).all()
        out: dict[str, int] = dict.fromkeys(STATES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    def requeue(
        self, entry_ids: Sequence[int] = (), *, failed: bool = False
    ) -> tuple[list[int], list[str]]:
        """Put failed (or, named explicitly, mapped) rows back to ``received`` for replay.

        Returns (requeued ids, reasons for ids that were not).
        """
        problems: list[str] = []
        with self._begin() as conn:
            if failed:
                ids = [
                    r[0]
                    for r in conn.execute(
                        select(_T.c.id).where(_T.c.state == "failed").order_by(_T.c.id)
                    )
                ]
            else:
                found = {
                    r.id: r.state
                    for r in conn.execute(
                        select(_T.c.id, _T.c.state).where(_T.c.id.in_(list(entry_ids)))
                    )
                }
                ids = []
                for i in entry_ids:
                    state = found.get(i)
                    if state is None:
                        problems.append(f"{i}: no such inbox message")
                    elif state == "rejected":
                        problems.append(
                            f"{i}: was refused at intake (ACK AE/AR); the sender must resend it"
                        )
                    elif state == "received":
                        problems.append(f"{i}: is already waiting to be mapped")
                    else:
                        ids.append(i)
            if ids:
                conn.execute(
                    update(_T)
                    .where(_T.c.id.in_(ids), and_(_T.c.state.in_(["failed", "mapped"])))
                    .values(state="received", lease_owner=None, lease_until=None, app_ack=None)
                )
        return ids, problems

    def pending_app_acks(
        self, limit: int = 100, sender_ids: Sequence[int] | None = None
    ) -> list[tuple[int, int | None, bytes]]:
        """(id, sender id, ACK) of application ACKs built but not yet delivered."""
        query = (
            select(_T.c.id, _T.c.sender_id, _T.c.app_ack)
            .where(_T.c.app_ack.is_not(None), _T.c.app_ack_sent_at.is_(None))
            .order_by(_T.c.id)
            .limit(limit)
        )
        if sender_ids is not None:
            query = query.where(_T.c.sender_id.in_(list(sender_ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    def mark_app_ack_sent(self, entry_id: int) -> None:
        with self._begin() as conn:
            conn.execute(update(_T).where(_T.c.id == entry_id).values(app_ack_sent_at=self.now()))


class _HotSql:
    """The intake's two statements, rendered once for the dialect's DB-API paramstyle.

    They run for every message, and SQLAlchemy's statement handling costs more than the
    insert itself; everything else in this module uses ordinary Core statements.
    """

    _INSERT_COLUMNS = (
        "received_at",
        "peer",
        "channel",
        "sender_id",
        "sending_application",
        "sending_facility",
        "control_id",
        "message_type",
        "version",
        "charset",
        "digest",
        "raw",
        "state",
        "error",
        "ack_code",
        "ack",
        "app_ack_mode",
        "app_ack",
        "patient_key",
        "duplicate_of",
        "attempts",
    )

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        self.style = dialect.paramstyle
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name in self._INSERT_COLUMNS:
            column = _T.c[name]
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.processors[name] = process
        cols = ", ".join(self._INSERT_COLUMNS)
        values = ", ".join(self._mark(n) for n in self._INSERT_COLUMNS)
        base = f"INSERT INTO {_T.name} ({cols}) VALUES ({values})"
        self.insert_sql = f"{base} RETURNING id"
        self.insert_once_sql = f"{base} ON CONFLICT DO NOTHING RETURNING id"
        self.prior_sql = (
            f"SELECT id, digest, ack FROM {_T.name} WHERE sender_id = {self._mark('sender_id')}"
            f" AND control_id = {self._mark('control_id')} AND state <> 'rejected'"
        )

    def _mark(self, name: str) -> str:
        if self.style == "qmark":
            return "?"
        if self.style == "format":
            return "%s"
        if self.style == "pyformat":
            return f"%({name})s"
        return f":{name}"

    def _params(self, names: Sequence[str], values: dict[str, Any]) -> Any:
        out = {}
        for n in names:
            value = values[n]
            process = self.processors.get(n)
            out[n] = process(value) if process is not None and value is not None else value
        if self.style in ("qmark", "format"):
            return tuple(out[n] for n in names)
        return out

    def insert(self, cur: Any, row: dict[str, Any], *, on_conflict_nothing: bool) -> int | None:
        sql = self.insert_once_sql if on_conflict_nothing else self.insert_sql
        cur.execute(sql, self._params(self._INSERT_COLUMNS, row))
        found = cur.fetchone()
        return int(found[0]) if found is not None else None

    def prior(self, cur: Any, sender_id: int | None, control_id: str) -> tuple[int, bytes, bytes]:
        params = self._params(
            ("sender_id", "control_id"), {"sender_id": sender_id, "control_id": control_id[:199]}
        )
        cur.execute(self.prior_sql, params)
        found = cur.fetchone()
        if found is None:
            raise InboxError(f"no stored message for control id {control_id!r} after a conflict")
        return int(found[0]), bytes(found[1]), bytes(found[2])
