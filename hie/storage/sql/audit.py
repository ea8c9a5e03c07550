"""The audit trail in SQL: chained AuditEvents, apart from the clinical tables.

The tables have their own metadata so that they can live in another database
(``audit.database_url``). Appends are serialised: on PostgreSQL by a transaction-level
advisory lock, on SQLite by its single writer (``BEGIN IMMEDIATE`` behind the writer
gate). Inside that lock the head of the chain is read, the new records are numbered
and hashed, and, when a batch crosses a multiple of ``checkpoint_every``, the new head
is signed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    exists,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from hie.storage.ports import (
    GENESIS,
    AuditQuery,
    AuditRecord,
    ChainLink,
    Checkpoint,
    StoredAudit,
    chain_hash,
)
from hie.storage.sql.engine import is_sqlite, writer_gate
from hie.storage.sql.models import NAMING
from hie.storage.sql.store import from_us, to_us

Sign = Callable[[int, bytes], tuple[str, bytes]]
"""Signs (seq, hash) of a checkpoint; returns (key id, signature)."""

metadata = MetaData(naming_convention=NAMING)

EVENT = Table(
    "audit_event",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("recorded_us", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("subtype", String(64), nullable=False),
    Column("action", String(1), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("agent", String(256), nullable=False),
    Column("organization", String(128)),
    Column("purpose", String(64)),
    Column("break_glass", Boolean, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    Index("ix_audit_event_recorded_us", "recorded_us"),
    Index("ix_audit_event_agent_seq", "agent", "seq"),
    Index(
        "ix_audit_event_break_glass_seq",
        "break_glass",
        "seq",
        sqlite_where=text("break_glass"),
        postgresql_where=text("break_glass"),
    ),
)

# Who and what each record is about: kind 'p' (a patient) or 'e' (any other entity).
REF = Table(
    "audit_ref",
    metadata,
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(1), nullable=False),
    Column("ref", String(200), nullable=False),
    Index("ix_audit_ref_kind_ref_seq", "kind", "ref", "seq"),
)

CHECKPOINT = Table(
    "audit_checkpoint",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
    Column("signed_us", BigInteger, nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)

# How far each host's per-process audit journals have been chained (hie.audit.journal).
JOURNAL = Table(
    "audit_journal",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("drained", BigInteger, nullable=False),
)

# 13 columns a row: within SQLite's 32,766 and PostgreSQL's 65,535 parameters.
_ROWS_PER_STATEMENT = 500

# Any constant: the one advisory lock that serialises appends to the chain.
_CHAIN_LOCK = 0x6869655F61756474
_COLUMNS = (
    EVENT.c.seq,
    EVENT.c.recorded_us,
    EVENT.c.content,
    EVENT.c.prev_hash,
    EVENT.c.hash,
)


class SqlAuditLog:
    """``hie.storage.ports.AuditLog`` over its own engine (maybe the main database's URL)."""

    def __init__(
        self,
        engine: Engine,
        *,
        sign: Sign | None = None,
        checkpoint_every: int = 10_000,
        durable: bool = True,
    ) -> None:
        """``durable=False``: on PostgreSQL the appends of ``append`` commit without
        waiting for the WAL flush (SQLite: give the engine synchronous=NORMAL)."""
        self.engine = engine
        self._durable = durable
        url = engine.url.render_as_string(hide_password=False)
        self._sqlite = is_sqlite(url)
        self._gate = writer_gate(url)
        self._sign = sign
        self._every = max(1, checkpoint_every)
        mark = "?" if self._sqlite else "%s"
        self._mark = mark
        self._sql_event = (
            f"INSERT INTO audit_event ({', '.join(c.name for c in EVENT.columns)}) VALUES "
        )
        self._sql_ref = "INSERT INTO audit_ref (seq, kind, ref) VALUES "
        self._sql_head = "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1"
        self._sql_checkpoint = (
            "INSERT INTO audit_checkpoint (seq, hash, signed_us, key_id, signature) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})"
        )
        self._sql_journal = (
            f"INSERT INTO audit_journal (name, drained) VALUES ({mark}, {mark}) "
            "ON CONFLICT (name) DO UPDATE SET drained = excluded.drained"
        )
        self._sql_links = (
            "SELECT seq, recorded_us, content, prev_hash, hash FROM audit_event "
            f"WHERE seq > {mark} ORDER BY seq"
        )

    # -- appending -------------------------------------------------------------

    def append(
        self, records: Sequence[AuditRecord], *, drained: Mapping[str, int] | None = None
    ) -> None:
        # The whole group commit on the driver: SQLAlchemy's transaction and statement
        # machinery cost more than appending a small batch.
        gate = self._gate.held() if self._gate else nullcontext()
        with gate:
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    if self._sqlite:
                        cursor.execute("BEGIN IMMEDIATE")
                    elif not self._durable:
                        cursor.execute("SET LOCAL synchronous_commit = off")
                    self._append(cursor, records)
                    if drained:
                        cursor.executemany(self._sql_journal, list(drained.items()))
                finally:
                    cursor.close()
                if self._sqlite:
                    raw.execute("COMMIT")
                else:
                    raw.commit()
            except BaseException:
                if self._sqlite:
                    with suppress(Exception):  # no transaction may be open
                        raw.execute("ROLLBACK")
                else:
                    raw.rollback()
                raise
            finally:
                raw.close()

    def append_in(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        """Chain ``records`` inside the caller's write transaction on this database."""
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            self._append(cursor, records)
        finally:
            cursor.close()

    def _append(self, cursor: Any, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        if not self._sqlite:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_CHAIN_LOCK,))
        cursor.execute(self._sql_head)
        head = cursor.fetchone()
        seq, prev = (int(head[0]), bytes(head[1])) if head else (0, GENESIS)
        # Parameters flat, as the multi-row statements take them (no tuple per row).
        events: list[Any] = []
        refs: list[Any] = []
        checkpoints: list[tuple[int, bytes, int, str, bytes]] = []
        every, sign = self._every, self._sign
        for r in records:
            seq += 1
            us = to_us(r.recorded)
            digest = chain_hash(prev, seq, us, r.content)
            events += (
                seq,
                us,
                r.type,
                r.subtype,
                r.action,
                r.outcome,
                r.agent,
                r.organization,
                r.purpose,
                r.break_glass,
                r.content,
                prev,
                digest,
            )
            for p in r.patients:
                refs += (seq, "p", p)
            for e in r.entities:
                refs += (seq, "e", e)
            prev = digest
            if seq % every == 0 and sign is not None:
                # Every multiple is signed, however large the batch (a drained journal).
                key_id, signature = sign(seq, digest)
                checkpoints.append((seq, digest, us, key_id, signature))
        self._insert(cursor, self._sql_event, events, len(EVENT.columns))
        if refs:
            self._insert(cursor, self._sql_ref, refs, 3)
        if checkpoints:
            cursor.executemany(self._sql_checkpoint, checkpoints)

    def drained(self, journals: Sequence[str]) -> dict[str, int]:
        if not journals:
            return {}
        statement = select(JOURNAL.c.name, JOURNAL.c.drained).where(JOURNAL.c.name.in_(journals))
        with self._reading() as conn:
            return {name: int(offset) for name, offset in conn.execute(statement)}

    def forget(self, journals: Sequence[str]) -> None:
        if not journals:
            return
        with self.engine.begin() as conn:
            conn.execute(JOURNAL.delete().where(JOURNAL.c.name.in_(journals)))

    def _insert(self, cursor: Any, sql: str, values: list[Any], width: int) -> None:
        # Many rows per statement: the driver gives up the GIL once per statement, and
        # under load each time costs a wait behind busy request threads (a drained
        # journal's batch row by row made its request wait up to a second).
        row = "(" + ", ".join(self._mark for _ in range(width)) + ")"
        step = _ROWS_PER_STATEMENT * width
        full = sql + ", ".join(row for _ in range(_ROWS_PER_STATEMENT))
        for start in range(0, len(values), step):
            chunk = values[start : start + step]
            rows = len(chunk) // width
            text = (
                full if rows == _ROWS_PER_STATEMENT else sql + ", ".join(row for _ in range(rows))
            )
            cursor.execute(text, chunk)

    # -- reading ---------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def search(self, query: AuditQuery) -> list[StoredAudit]:
        where: list[ColumnElement[bool]] = []
        for column, value in (
            (EVENT.c.agent, query.agent),
            (EVENT.c.type, query.type),
            (EVENT.c.subtype, query.subtype),
            (EVENT.c.action, query.action),
            (EVENT.c.outcome, query.outcome),
            (EVENT.c.purpose, query.purpose),
            (EVENT.c.organization, query.organization),
        ):
            if value is not None:
                where.append(column == value)
        if query.break_glass is not None:
            where.append(EVENT.c.break_glass.is_(query.break_glass))
        if query.recorded_from is not None:
            where.append(EVENT.c.recorded_us >= to_us(query.recorded_from))
        if query.recorded_to is not None:
            where.append(EVENT.c.recorded_us < to_us(query.recorded_to))
        if query.before_seq is not None:
            where.append(EVENT.c.seq < query.before_seq)
        for kind, ref in (("p", query.patient), ("e", query.entity)):
            if ref is not None:
                where.append(
                    exists().where(
                        and_(REF.c.seq == EVENT.c.seq, REF.c.kind == kind, REF.c.ref == ref)
                    )
                )
        statement = select(*_COLUMNS).where(*where).order_by(EVENT.c.seq.desc())
        with self._reading() as conn:
            rows = conn.execute(statement.limit(query.count)).all()
        return [_stored(row) for row in rows]

    def get(self, seq: int) -> StoredAudit | None:
        with self._reading() as conn:
            row = conn.execute(select(*_COLUMNS).where(EVENT.c.seq == seq)).first()
        return _stored(row) if row else None

    def links(self, after: int = 0) -> Iterator[Sequence[ChainLink]]:
        """Batches read ahead by a thread of their own: the driver waits for the database
        without the GIL while the caller hashes the previous batch."""
        ahead: queue.Queue[Sequence[ChainLink] | BaseException | None] = queue.Queue(maxsize=4)
        stop = threading.Event()

        def read() -> None:
            try:
                for batch in self._batches(after):
                    while not stop.is_set():
                        try:
                            ahead.put(batch, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ahead.put(None)
            except BaseException as exc:  # handed to the caller
                ahead.put(exc)

        reader = threading.Thread(target=read, name="audit-links", daemon=True)
        reader.start()
        try:
            while True:
                item = ahead.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            reader.join(timeout=5)

    def _batches(self, after: int) -> Iterator[Sequence[ChainLink]]:
        # Straight to the driver; on PostgreSQL a server-side cursor in binary format
        # (bytea as raw bytes, not hex), so memory stays flat and nothing is decoded twice.
        raw = self.engine.raw_connection()
        try:
            if self._sqlite:
                cursor = raw.cursor()
            else:
                cursor = raw.driver_connection.cursor(  # type: ignore[union-attr]
                    name="hie_audit_links", binary=True
                )
            cursor.execute(self._sql_links, (after,))
            while True:
                batch = cursor.fetchmany(20_000)
                if not batch:
                    break
                # Both drivers return int and bytes, so rows go out as they come.
                yield cast(list[ChainLink], batch)
            cursor.close()
            raw.rollback()
        finally:
            raw.close()

    def checkpoints(self) -> list[Checkpoint]:
        with self._reading() as conn:
            rows = conn.execute(select(CHECKPOINT).order_by(CHECKPOINT.c.seq)).all()
        return [
            Checkpoint(int(r.seq), bytes(r.hash), from_us(r.signed_us), r.key_id, r.signature)
            for r in rows
        ]

    def close(self) -> None:
        self.engine.dispose()


def _stored(row: Any) -> StoredAudit:
    seq, us, content, prev, digest = cast(tuple[int, int, bytes, bytes, bytes], tuple(row))
    return StoredAudit(int(seq), from_us(us), bytes(content), bytes(prev), bytes(digest))
