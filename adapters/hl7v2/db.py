"""The adapter's tables share one MetaData; ``adapters.hl7v2.schema.metadata`` has them all.

The engine comes from outside. :func:`make_engine` builds one the way the inbox expects,
for tools, tests and benchmarks: SQLite in WAL mode with ``synchronous=FULL`` (a commit
survives power loss, which is what an ACK promises) and write transactions opened with
``BEGIN IMMEDIATE`` (no lock upgrade deadlocks between the listener and workers);
PostgreSQL through psycopg 3.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    metadata = metadata


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, synchronous: str = "FULL", **kwargs: Any) -> Engine:
    """An engine configured for durable inbox writes."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        configure_sqlite(engine, synchronous=synchronous)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def configure_sqlite(engine: Engine, *, synchronous: str = "FULL") -> None:
    """WAL, synchronous level, busy timeout and ``BEGIN IMMEDIATE`` for every transaction."""
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"invalid SQLite synchronous level {synchronous!r}")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event emit BEGIN (the driver's implicit BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


WriterGate = Callable[[], AbstractContextManager[None]]


def writer_gate(engine: Engine) -> WriterGate:
    """Queue this engine's SQLite write transactions with the exchange's writers.

    The exchange's store holds an exclusive flock on ``<database>.writer`` around each
    write transaction (``hie.storage.sql.engine.WriterGate``), so its writers wake each
    other at once. A writer outside that queue only has SQLite's busy handler, which
    sleeps up to 100 ms a try: under a busy mapping worker the listener's inbox commits
    (and so the ACKs) starved. Taking the same flock puts them in the same queue. Each
    thread has its own descriptor. Elsewhere (PostgreSQL, memory) there is no gate.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        return contextlib.nullcontext
    path = database + ".writer"
    local = threading.local()

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        fd = getattr(local, "fd", None)
        if fd is None:
            fd = local.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    return held
