"""Reads by id run on a connection per thread outside the pool (hie.storage.sql.store):
they see every commit at once, survive a lost connection, and close with the store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from hie.storage.ports import NewVersion
from hie.storage.sql.engine import build_engine
from hie.storage.sql.store import SqlStore
from tests.support import fresh_database

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    sql = SqlStore(build_engine(fresh_database(request.param, request, tmp_path)))
    yield sql
    sql.close()


def write(store: SqlStore, id_: str, v: int) -> None:
    content = b'{"resourceType":"Patient","id":"%s","v":%d}' % (id_.encode(), v)
    new = NewVersion("Patient", id_, v, T0, False, content, "PUT", expected_version=v - 1 or None)
    with store.unit_of_work(write=True) as uow:
        uow.write(new)


def test_a_read_sees_each_commit_at_once_on_the_same_thread(store: SqlStore) -> None:
    assert store.lookup("Patient", "p1") is None
    write(store, "p1", 1)
    first = store.lookup("Patient", "p1")
    assert first is not None
    assert first.version == 1
    write(store, "p1", 2)  # no snapshot of the earlier read is kept
    current = store.lookup("Patient", "p1")
    assert current is not None
    assert current.version == 2
    assert b'"v":2' in current.content
    old = store.lookup("Patient", "p1", 1)
    assert old is not None
    assert b'"v":1' in old.content


def test_reads_do_not_hold_pool_connections(store: SqlStore) -> None:
    write(store, "p1", 1)
    seen: list[int] = []

    def read() -> None:
        stored = store.lookup("Patient", "p1")
        seen.append(stored.version if stored else 0)

    threads = [threading.Thread(target=read) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1] * 20
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # A write still gets a pooled connection at once.
    write(store, "p2", 1)


def test_a_lost_connection_is_replaced(store: SqlStore, request: pytest.FixtureRequest) -> None:
    write(store, "p1", 1)
    assert store.lookup("Patient", "p1") is not None
    if store.engine.dialect.name == "postgresql":
        # The server ends every other session of this database (as a restart would).
        with store.engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    else:
        store._points._local.conn.close()  # the thread's connection is closed under it
    stored = store.lookup("Patient", "p1")
    assert stored is not None
    assert stored.version == 1
