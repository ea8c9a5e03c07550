"""The SQL implementation of the storage port (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from hie.search.rows import IndexRow, TokenRow, UriRow
from hie.storage.ports import (
    AuditFailure,
    AuditRecord,
    EverythingRequest,
    HistoryQuery,
    NewVersion,
    SearchPage,
    SearchRequest,
    StoredResource,
    VersionConflict,
)
from hie.storage.sql.engine import WRITE_OPTION, is_sqlite, writer_gate
from hie.storage.sql.identity import SqlIdentityTables
from hie.storage.sql.index_tables import (
    ALL_TABLES,
    group,
    param_key,
    reference_table,
    token_table,
)
from hie.storage.sql.index_tables import columns as table_columns
from hie.storage.sql.models import ResourceRow, VersionRow
from hie.storage.sql.search_plan import Planner

R = cast(Table, ResourceRow.__table__)
V = cast(Table, VersionRow.__table__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


class SqlUnitOfWork:
    """One database transaction, implementing ``hie.storage.ports.UnitOfWork``."""

    def __init__(
        self,
        conn: Connection,
        sqlite: bool,
        planner: Planner,
        audit: ChainAppender | None = None,
    ) -> None:
        self._conn = conn
        self._sqlite = sqlite
        self._planner = planner
        self._pending: list[NewVersion] = []
        # The pending creates by (type, token or uri row): what probes look up.
        self._pending_rows: dict[tuple[str, IndexRow], list[NewVersion]] = {}
        self._audit_log = audit
        self._audit: list[AuditRecord] = []
        self._identity: SqlIdentityTables | None = None

    @property
    def identity(self) -> SqlIdentityTables:
        self.flush()
        if self._identity is None:
            self._identity = SqlIdentityTables(self._conn)
        return self._identity

    # -- reads ---------------------------------------------------------------

    @staticmethod
    def _stored(row: Sequence[Any]) -> StoredResource:
        return StoredResource(
            type=row[0],
            id=row[1],
            version=row[2],
            last_updated=from_us(row[3]),
            deleted=row[4],
            content=row[5],
            custodian=row[6],
        )

    def get(self, type_: str, id_: str) -> StoredResource | None:
        # A pending create is the only version of its (new) id; no other id needs a flush.
        for n in self._pending:
            if n.id == id_ and n.type == type_:
                return StoredResource(
                    n.type, n.id, n.version, n.last_updated, n.deleted, n.content, n.custodian
                )
        # Driver level: the statement is fixed, and SQLAlchemy's execution path costs
        # more than the indexed lookup (every update and conditional write reads first).
        sql = _GET_CURRENT_SQLITE if self._sqlite else _GET_CURRENT_PG
        row = self._conn.exec_driver_sql(sql, (type_, id_)).first()
        if row is None:
            return None
        return StoredResource(
            type=row[0],
            id=row[1],
            version=row[2],
            last_updated=from_us(row[3]),
            deleted=bool(row[4]),
            content=bytes(row[5]),
            custodian=row[6],
        )

    def get_version(self, type_: str, id_: str, version: int) -> StoredResource | None:
        self.flush()
        row = self._conn.execute(
            select(
                V.c.type,
                V.c.id,
                V.c.version,
                V.c.last_updated_us,
                V.c.deleted,
                V.c.content,
                V.c.custodian,
            )
            .join(R, R.c.pk == V.c.res_pk)
            .where(R.c.type == type_, R.c.id == id_, V.c.version == version)
        ).first()
        return self._stored(row) if row else None

    def search(self, request: SearchRequest) -> SearchPage:
        if self._pending:
            # A conditional write's probe sees the pending creates without inserting them,
            # so a group of transactions flushes once, at the commit.
            page = self._planner.search_beside(self._conn, request, self._pending_with)
            if page is not None:
                return page
            self.flush()
        return self._planner.search(self._conn, request)

    def everything(self, request: EverythingRequest) -> SearchPage:
        self.flush()
        return self._planner.everything(self._conn, request)

    def scan(
        self, type_: str | None, after: int | None, limit: int
    ) -> list[tuple[int, StoredResource]]:
        self.flush()
        query = select(
            R.c.pk,
            R.c.type,
            R.c.id,
            R.c.version,
            R.c.last_updated_us,
            R.c.deleted,
            R.c.content,
            R.c.custodian,
        ).where(R.c.deleted.is_(False))
        if type_ is not None:
            query = query.where(R.c.type == type_)
        if after is not None:
            query = query.where(R.c.pk > after)
        rows = self._conn.execute(query.order_by(R.c.pk).limit(limit)).all()
        return [(int(row[0]), self._stored(row[1:])) for row in rows]

    def count(self, type_: str | None) -> int:
        self.flush()
        query = select(func.count()).select_from(R).where(R.c.deleted.is_(False))
        if type_ is not None:
            query = query.where(R.c.type == type_)
        return int(self._conn.execute(query).scalar_one())

    def referring(
        self,
        type_: str,
        param: str,
        target_type: str,
        target_ids: Sequence[str],
        marker: str | None = None,
    ) -> list[StoredResource]:
        self.flush()
        params: dict[str, Any] = {
            "f_param": param_key(type_, param),
            "f_ttype": target_type,
            "f_ids": list(target_ids),
        }
        statement = _REFERRING_ALL
        if marker is not None:
            params["f_marker"] = param_key(type_, marker)
            statement = _REFERRING
        return [self._stored(row) for row in self._conn.execute(statement, params)]

    def token_values(self, type_: str, param: str) -> list[tuple[str, StoredResource]]:
        self.flush()
        key = param_key(type_, param)
        # A loose index scan (recursive CTE): one index probe per distinct code, so the
        # cost follows the number of shapes, not the millions of Consents sharing them.
        t, nxt, one = token_table, token_table.alias("nxt"), token_table.alias("one")
        codes = select(func.min(t.c.code).label("code")).where(t.c.param == key)
        walk = codes.cte("codes", recursive=True)
        step = select(
            select(func.min(nxt.c.code))
            .where(nxt.c.param == key, nxt.c.code > walk.c.code)
            .scalar_subquery()
        ).where(walk.c.code.is_not(None))
        walk = walk.union_all(step)
        holder = (
            select(one.c.res_pk)
            .where(one.c.param == key, one.c.code == walk.c.code)
            .order_by(one.c.system)  # in index order: a probe, never a scan for a rare shape
            .limit(1)
            .scalar_subquery()
        )
        query = (
            select(
                walk.c.code,
                R.c.type,
                R.c.id,
                R.c.version,
                R.c.last_updated_us,
                R.c.deleted,
                R.c.content,
                R.c.custodian,
            )
            .select_from(walk)
            .join(R, R.c.pk == holder)
            .where(walk.c.code.is_not(None))
        )
        rows = self._conn.execute(query.order_by(walk.c.code)).all()
        return [(str(row[0]), self._stored(row[1:])) for row in rows]

    def reindex(self, key: int, rows: Sequence[IndexRow]) -> None:
        self.flush()
        found = self._conn.execute(select(R.c.type).where(R.c.pk == key)).first()
        if found is None:
            raise KeyError(f"no resource is stored under key {key}")
        self._delete_index(key)
        self._insert_index([(key, str(found[0]), rows)])

    def _history_where(self, query: HistoryQuery) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if query.id is not None:
            res_pk = (
                select(R.c.pk).where(R.c.type == query.type, R.c.id == query.id).scalar_subquery()
            )
            where.append(V.c.res_pk == res_pk)
        elif query.type is not None:
            where.append(V.c.type == query.type)
        if query.since is not None:
            where.append(V.c.last_updated_us >= to_us(query.since))
        return where

    def history(self, query: HistoryQuery) -> list[tuple[int, StoredResource]]:
        self.flush()
        where = self._history_where(query)
        if query.before_seq is not None:
            where.append(V.c.seq < query.before_seq)
        rows = self._conn.execute(
            select(
                V.c.seq,
                V.c.type,
                V.c.id,
                V.c.version,
                V.c.last_updated_us,
                V.c.deleted,
                V.c.content,
                V.c.custodian,
            )
            .where(*where)
            .order_by(V.c.seq.desc())
            .limit(query.count)
        ).all()
        return [(row[0], self._stored(row[1:])) for row in rows]

    def count_history(self, query: HistoryQuery) -> int:
        self.flush()
        where = self._history_where(query)
        return int(
            self._conn.execute(select(func.count()).select_from(V).where(*where)).scalar_one()
        )

    # -- writes --------------------------------------------------------------

    def lock(self, key: str) -> None:
        # SQLite already serialises writers (BEGIN IMMEDIATE); PostgreSQL needs a lock.
        if not self._sqlite:
            self._conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(key)})

    def lock_all(self, keys: Sequence[str]) -> None:
        if not self._sqlite and keys:
            # unnest yields the array in order, so the locks are taken in the given order.
            self._conn.exec_driver_sql(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k",
                ([_lock_id(key) for key in keys],),
            )

    def _pending_with(self, type_: str, row: IndexRow) -> list[NewVersion]:
        return self._pending_rows.get((type_, row), [])

    def write(self, new: NewVersion) -> None:
        if new.expected_version is None:
            # Creates are batched (one executemany per table) until a read or the commit.
            self._pending.append(new)
            for index_row in new.rows:
                if index_row.__class__ is TokenRow or index_row.__class__ is UriRow:
                    found = self._pending_rows.setdefault((new.type, index_row), [])
                    if not found or found[-1] is not new:  # a row may repeat in a resource
                        found.append(new)
            if len(self._pending) >= _BATCH:
                self.flush()
            return
        self.flush()
        values = _values(new)
        row = self._conn.execute(
            _UPDATE_CURRENT,
            {"w_type": new.type, "w_id": new.id, "w_expected": new.expected_version, **values},
        ).first()
        if row is None:
            raise VersionConflict(
                f"{new.type}/{new.id} is no longer at version {new.expected_version}"
            )
        res_pk = int(row[0])
        self._delete_index(res_pk)
        self._insert_dependents([(res_pk, new)])

    def flush(self) -> None:
        """Write the batched creates (before any read, and at commit)."""
        if self._pending:
            pending, self._pending = self._pending, []
            self._pending_rows = {}
            rows = self._conn.execute(
                _INSERT_CURRENT, [{"type": n.type, "id": n.id, **_values(n)} for n in pending]
            ).all()
            self._insert_dependents(
                [(int(row[0]), n) for row, n in zip(rows, pending, strict=True)]
            )

    def _insert_dependents(self, written: list[tuple[int, NewVersion]]) -> None:
        """The version rows and search-index rows of freshly written versions."""
        self._conn.execute(
            insert(V),
            [
                {"res_pk": pk, "type": n.type, "id": n.id, "method": n.method, **_values(n)}
                for pk, n in written
            ],
        )
        self._insert_index([(pk, n.type, n.rows) for pk, n in written if n.rows])

    def _insert_index(self, written: list[tuple[int, str, Sequence[IndexRow]]]) -> None:
        batches = group(written, sqlite=self._sqlite)
        if not batches:
            return
        # Straight to the driver, inside this unit of work's transaction.
        raw = self._conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            for table, values in batches.items():
                if self._sqlite:
                    cursor.executemany(_SQLITE_INSERTS[table.name], values)
                else:
                    with cursor.copy(_PG_COPIES[table.name]) as copy:
                        for row in values:
                            copy.write_row(row)
        finally:
            cursor.close()

    def _delete_index(self, res_pk: int) -> None:
        if self._sqlite:
            for statement in _DELETES:
                self._conn.execute(statement, {"w_pk": res_pk})
            return
        # One round trip for every index table, not one each (each update of a resource).
        self._conn.exec_driver_sql(_PG_DELETE_INDEX, {"w_pk": res_pk})

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        if self._audit_log is None:
            raise RuntimeError("this store keeps no audit trail (audit.database_url is apart)")
        self._audit.extend(records)

    def finish(self) -> None:
        """Before commit: the last writes, then the audit chain (its lock is held briefly)."""
        self.flush()
        if self._audit and self._audit_log is not None:
            records, self._audit = self._audit, []
            try:
                self._audit_log.append_in(self._conn, records)
            except Exception as exc:
                raise AuditFailure(str(exc)) from exc


def _values(new: NewVersion) -> dict[str, Any]:
    return {
        "version": new.version,
        "last_updated_us": to_us(new.last_updated),
        "deleted": new.deleted,
        "custodian": new.custodian,
        "content": new.content,
    }


_BATCH = 500
_GET_CURRENT = select(
    R.c.type, R.c.id, R.c.version, R.c.last_updated_us, R.c.deleted, R.c.content, R.c.custodian
).where(R.c.type == bindparam("g_type"), R.c.id == bindparam("g_id"))
_GET_COLUMNS = "type, id, version, last_updated_us, deleted, content, custodian"
_GET_CURRENT_SQLITE = f"SELECT {_GET_COLUMNS} FROM resource WHERE type = ? AND id = ?"
_GET_CURRENT_PG = f"SELECT {_GET_COLUMNS} FROM resource WHERE type = %s AND id = %s"
# Built once: constructing statements per call costs more than executing them.
_REFERRING_ALL = (
    select(
        R.c.type, R.c.id, R.c.version, R.c.last_updated_us, R.c.deleted, R.c.content, R.c.custodian
    )
    .join(reference_table, reference_table.c.res_pk == R.c.pk)
    .where(
        reference_table.c.param == bindparam("f_param"),
        reference_table.c.target_type == bindparam("f_ttype"),
        reference_table.c.target_id.in_(bindparam("f_ids", expanding=True)),
        R.c.deleted.is_(False),
    )
    .distinct()
)
_REFERRING = _REFERRING_ALL.where(
    select(token_table.c.res_pk)
    .where(token_table.c.res_pk == R.c.pk, token_table.c.param == bindparam("f_marker"))
    .exists()
)
_INSERT_CURRENT = insert(R).returning(R.c.pk, sort_by_parameter_order=True)
_UPDATE_CURRENT = (
    update(R)
    .where(
        R.c.type == bindparam("w_type"),
        R.c.id == bindparam("w_id"),
        R.c.version == bindparam("w_expected"),
    )
    .returning(R.c.pk)
)
_SQLITE_INSERTS = {
    t.name: f"INSERT INTO {t.name} ({', '.join(table_columns(t))}) "
    f"VALUES ({', '.join('?' for _ in table_columns(t))})"
    for t in ALL_TABLES
}
_PG_COPIES = {
    t.name: f"COPY {t.name} ({', '.join(table_columns(t))}) FROM STDIN" for t in ALL_TABLES
}
_DELETES = [delete(table).where(table.c.res_pk == bindparam("w_pk")) for table in ALL_TABLES]
# Data-modifying CTEs all run to completion, whether or not the query reads them.
_PG_DELETE_INDEX = (
    "WITH "
    + ", ".join(
        f"d{n} AS (DELETE FROM {t.name} WHERE res_pk = %(w_pk)s)" for n, t in enumerate(ALL_TABLES)
    )
    + " SELECT 1"
)


class ChainAppender(Protocol):
    def append_in(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        """Chain audit records inside a write transaction (``SqlAuditLog``)."""


class PointReads:
    """One-statement reads (a resource by id) on a connection per thread, outside the pool.

    Reads are the exchange's hottest path, and a pool checkout and return (with, on
    PostgreSQL, a pre-ping round trip) cost more than the query. Each connection runs in
    autocommit, so every read sees what is committed at that moment. A connection that
    fails is replaced and the statement tried once more (a restarted database server).
    """

    def __init__(self, engine: Engine, *, sqlite: bool) -> None:
        self._engine = engine
        self._sqlite = sqlite
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[threading.Thread, Any]] = []

    def one(self, sql: str, params: tuple[Any, ...]) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                return self._fetch(conn, sql, params)
            except Exception:
                self._drop(conn)  # maybe a broken connection: once more on a new one
        conn = self._connect()
        try:
            return self._fetch(conn, sql, params)
        except Exception:
            self._drop(conn)
            raise

    @staticmethod
    def _fetch(conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchone()
        finally:
            cursor.close()

    def _connect(self) -> Any:
        pooled = self._engine.raw_connection()
        conn: Any = pooled.driver_connection
        pooled.detach()  # ours until closed; the pool opens another in its place
        if not self._sqlite:  # SQLite's are already in autocommit (engine.py)
            conn.rollback()  # whatever the checkout's ping began
            conn.autocommit = True
        self._local.conn = conn
        with self._lock:
            # Connections of threads that have ended are closed here.
            for thread, old in [o for o in self._open if not o[0].is_alive()]:
                self._open.remove((thread, old))
                with suppress(Exception):
                    old.close()
            self._open.append((threading.current_thread(), conn))
        return conn

    def _drop(self, conn: Any) -> None:
        self._local.conn = None
        with self._lock:
            self._open = [o for o in self._open if o[1] is not conn]
        with suppress(Exception):
            conn.close()

    def close(self) -> None:
        with self._lock:
            opened, self._open = self._open, []
        for _, conn in opened:
            with suppress(Exception):
                conn.close()


class SqlStore:
    """``hie.storage.ports.Store`` over an SQLAlchemy engine.

    ``audit`` is the audit trail when it lives in this database: writes then chain their
    audit records in their own transaction, so data and record commit together.
    """

    def __init__(self, engine: Engine, *, audit: ChainAppender | None = None) -> None:
        self.engine = engine
        self._audit = audit
        url = engine.url.render_as_string(hide_password=False)
        self._sqlite = is_sqlite(url)
        self._gate = writer_gate(url)
        self._planner = Planner(sqlite=self._sqlite)
        mark = "?" if self._sqlite else "%s"
        columns = "r.type, r.id, {v}.version, {v}.last_updated_us, {v}.deleted, {v}.content, {v}.custodian"
        self._sql_current = f"SELECT {columns.format(v='r')} FROM resource r WHERE r.type = {mark} AND r.id = {mark}"
        self._sql_enterprise = (
            f"SELECT l.enterprise_id, {columns.format(v='r')} FROM mpi_link l "
            f"LEFT JOIN resource r ON r.type = 'Patient' AND r.id = l.enterprise_id "
            f"WHERE l.source_id = {mark}"
        )
        self._sql_version = (
            f"SELECT {columns.format(v='v')} FROM resource r JOIN resource_version v "
            f"ON v.res_pk = r.pk WHERE r.type = {mark} AND r.id = {mark} AND v.version = {mark}"
        )
        self._points = PointReads(engine, sqlite=self._sqlite)

    @contextmanager
    def unit_of_work(self, *, write: bool) -> Iterator[SqlUnitOfWork]:
        gate = self._gate.held() if write and self._gate else nullcontext()
        with self.engine.connect() as conn, gate:
            if write:
                conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                uow = SqlUnitOfWork(conn, self._sqlite, self._planner, self._audit)
                yield uow
                uow.finish()

    def lookup(self, type_: str, id_: str, version: int | None = None) -> StoredResource | None:
        if version is None:
            row = self._points.one(self._sql_current, (type_, id_))
        else:
            row = self._points.one(self._sql_version, (type_, id_, version))
        if row is None:
            return None
        return StoredResource(
            row[0], row[1], row[2], from_us(row[3]), bool(row[4]), bytes(row[5]), row[6]
        )

    def enterprise_link(self, source_id: str) -> tuple[str, StoredResource | None] | None:
        # One statement and, without a transaction to open and end, one round trip.
        with self.engine.connect() as conn:
            if not self._sqlite:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            row = conn.exec_driver_sql(self._sql_enterprise, (source_id,)).first()
        if row is None:
            return None
        if row[1] is None:
            return row[0], None
        stored = StoredResource(
            row[1], row[2], row[3], from_us(row[4]), bool(row[5]), bytes(row[6]), row[7]
        )
        return row[0], stored

    def close(self) -> None:
        self._points.close()
        self.engine.dispose()
