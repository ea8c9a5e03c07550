"""Finding the distinct consent shapes at city scale (what every restricted search does).

Fills the ``resource`` and ``idx_token`` tables of a scratch PostgreSQL database with
CONSENTS current Consents that share SHAPES provision trees (the shape rows the exchange
writes, ``hie.consent.shapes``), then times, in the same run:
- the store's ``token_values`` (a loose index scan: one probe per distinct shape);
- the aggregate it replaced (GROUP BY over every shape row), as the peer.

    .venv/bin/python bench/consent_shapes.py [--consents 1000000] [--shapes 5] [--db NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text

from hie.storage.sql.engine import build_engine
from hie.storage.sql.index_tables import param_key, token_table
from hie.storage.sql.migrate import upgrade
from hie.storage.sql.store import SqlStore

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"


def _median_ms(fn: Callable[[], Any], runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--consents", type=int, default=1_000_000)
    ap.add_argument("--shapes", type=int, default=5)
    ap.add_argument("--db", default="hie_bench_shapes")
    args = ap.parse_args()
    admin = build_engine(PG + "postgres").execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {args.db}"))
        c.execute(text(f"CREATE DATABASE {args.db}"))
    engine = build_engine(PG + args.db)
    upgrade(engine)
    key = param_key("Consent", "_consent-shape")
    n, shapes = args.consents, args.shapes
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO resource (pk, type, id, version, last_updated_us, deleted, content)"
                " SELECT g, 'Consent', 'c' || g, 1, 0, false, '\\x7b7d'::bytea"
                " FROM generate_series(1, :n) g"
            ),
            {"n": n},
        )
        c.execute(
            text(
                "INSERT INTO idx_token (res_pk, param, system, code)"
                " SELECT g, :key, NULL, 'shape' || (g % :shapes) FROM generate_series(1, :n) g"
            ),
            {"n": n, "key": key, "shapes": shapes},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        # As autovacuum leaves a settled table: the visibility map lets index-only scans be.
        c.execute(text("VACUUM ANALYZE idx_token"))
        c.execute(text("VACUUM ANALYZE resource"))
    store = SqlStore(engine)

    def loose() -> list[Any]:
        with store.unit_of_work(write=False) as uow:
            return uow.token_values("Consent", "_consent-shape")

    def empty() -> None:
        with store.unit_of_work(write=False):
            pass

    t = token_table
    aggregate = select(t.c.code, func.min(t.c.res_pk)).where(t.c.param == key).group_by(t.c.code)
    with engine.connect() as c:
        peer = _median_ms(lambda: c.execute(aggregate).all())
    found = loose()
    assert len(found) == shapes, found
    print(f"# {n:,} current Consents, {shapes} shapes, PostgreSQL, median of 9")
    print(f"token_values (loose index scan): {_median_ms(loose):.2f} ms")
    print(f"  of which opening and closing a read unit of work: {_median_ms(empty):.2f} ms")
    print(f"peer: GROUP BY over every shape row: {peer:.2f} ms")


if __name__ == "__main__":
    main()
