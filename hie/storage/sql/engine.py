"""Engines for the two supported databases.

SQLite runs in WAL mode: readers never block the writer. Write transactions begin with
``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of failing
when a read lock cannot be upgraded. PostgreSQL is used through psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

WRITE_OPTION = "hie_write"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def build_engine(
    url: str, *, synchronous: str = "FULL", pool_size: int = 8, echo: bool = False
) -> Engine:
    if not is_sqlite(url):
        return create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, echo=echo
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
