"""Engines for the two supported databases.

SQLite runs in WAL mode: readers never block the writer. Write transactions begin with
``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of failing
when a read lock cannot be upgraded. PostgreSQL is used through psycopg 3.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

WRITE_OPTION = "hie_write"
CUSTOM_PLANS = "-c plan_cache_mode=force_custom_plan"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def build_engine(
    url: str, *, synchronous: str = "FULL", pool_size: int = 8, echo: bool = False
) -> Engine:
    if not is_sqlite(url):
        # psycopg prepares a statement after five runs, and PostgreSQL may then switch it
        # to a generic plan, made without the values. Search statements carry very
        # selective values (one patient, one code, one month) over skewed data: the
        # generic plan of Observation by subject and code hashed every row of the code
        # (100 ms instead of 1 ms). Custom plans keep prepared statements' saved parsing.
        options = " ".join(
            part
            for part in (make_url(url).query.get("options"), CUSTOM_PLANS)
            if isinstance(part, str)
        )
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            echo=echo,
            connect_args={"options": options},
        )
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": 60},
    )
    mode = synchronous.upper()
    if mode not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(f"database.sqlite_synchronous must be OFF/NORMAL/FULL/EXTRA, not {mode}")

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's begin event issue BEGIN; the driver's implicit BEGIN cannot be IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={mode}")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class WriterGate:
    """Queue SQLite writers in the kernel rather than in SQLite's busy handler.

    SQLite retries a busy lock by sleeping (1, 2, 5 ... 100 ms), which under steady
    contention from several worker processes turns into seconds of tail latency. An
    exclusive flock, held from before BEGIN IMMEDIATE until after COMMIT, wakes the next
    writer the moment the previous one is done. Each thread has its own descriptor, so
    threads exclude each other as well as other processes.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = getattr(self._local, "fd", None)
        if fd is None:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._local.fd = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def writer_gate(url: str) -> WriterGate | None:
    """The gate for a file-backed SQLite database; None where the database queues writers."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return WriterGate(Path(database + ".writer"))
