"""What indexing adds to a write, against the plain write, in the same run.

    .venv/bin/python bench/search_index_cost.py [--resources 20000] [--runs 3]

On a scratch PostgreSQL database (hie_bench_search_cost) and on SQLite, the same cloned
Synthea resources are written through the store's write path (a unit of work per 500
resources, as a transaction bundle or an import chunk writes them):

- plain: resource and version rows only (``NewVersion.rows`` empty);
- indexed: the same plus ``Extractor.extract`` and every index row.

Runs alternate, tables are emptied before each, and medians are printed: microseconds per
resource for the plain write, extraction alone, and the indexed write; the indexing cost
(indexed - plain) and its ratio to the plain write. For scale, the cost of validation
(``hie.fhir.validation``), which every exchange write also pays, is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _harness import machine
from search_data import clones, templates
from search_generate import create_database

from hie.fhir.canonical import dumps, with_meta
from hie.fhir.types import SERVED_TYPES
from hie.fhir.validation import load_validator
from hie.search import Extractor, default_registry
from hie.storage.ports import NewVersion
from hie.storage.sql.engine import build_engine
from hie.storage.sql.index_tables import ALL_TABLES
from hie.storage.sql.migrate import upgrade
from hie.storage.sql.store import SqlStore

BATCH = 500


def bodies(count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for _, resources in clones(templates(), 0):
        for r in resources:
            out.append(with_meta(r, id_=r["id"], version=1, last_updated=now))
        if len(out) >= count:
            return out[:count]
    raise AssertionError("unreachable")


def empty(engine: sa.Engine) -> None:
    names = ["resource_version", "resource", *(t.name for t in ALL_TABLES)]
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for name in names:
                conn.exec_driver_sql(f"DELETE FROM {name}")
        else:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(names)}")


def write(store: SqlStore, items: list[dict[str, Any]], extractor: Extractor | None) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    for i in range(0, len(items), BATCH):
        with store.unit_of_work(write=True) as uow:
            for body in items[i : i + BATCH]:
                uow.write(
                    NewVersion(
                        type=body["resourceType"],
                        id=body["id"],
                        version=1,
                        last_updated=now,
                        deleted=False,
                        content=dumps(body),
                        method="POST",
                        rows=extractor.extract(body) if extractor else (),
                    )
                )
    return (time.perf_counter() - started) / len(items) * 1e6


def per_resource(fn: Any, items: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for body in items:
        fn(body)
    return (time.perf_counter() - started) / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"# machine: {machine()}")
    items = bodies(args.resources)
    extractor = Extractor(default_registry(), resource_types=sorted(SERVED_TYPES))
    validator = load_validator()
    extract_us = per_resource(extractor.extract, items)
    validate_us = per_resource(validator.check, items[:5000])
    rows = sum(len(extractor.extract(b)) for b in items) / len(items)
    print(f"# {len(items)} resources, {rows:.1f} index rows each")
    print(f"extraction alone: {extract_us:.0f} us/resource; validation: {validate_us:.0f} us")
    workdir = Path("/tmp/hie-bench-search-cost")
    workdir.mkdir(exist_ok=True)
    (workdir / "cost.db").unlink(missing_ok=True)
    for name, url in (
        ("postgresql", create_database("hie_bench_search_cost")),
        ("sqlite", f"sqlite:///{workdir}/cost.db"),
    ):
        engine = build_engine(url, synchronous="NORMAL")
        upgrade(engine)
        store = SqlStore(engine)
        plain, indexed = [], []
        for _ in range(args.runs):
            empty(engine)
            plain.append(write(store, items, None))
            empty(engine)
            indexed.append(write(store, items, extractor))
        p, i = statistics.median(plain), statistics.median(indexed)
        print(
            f"{name}: plain write {p:.0f} us/resource, indexed write {i:.0f} us/resource; "
            f"indexing adds {i - p:.0f} us = {(i - p) / p:.2f}x the plain write "
            f"({(i - p) / (p + validate_us):.2f}x a plain write with validation)"
        )
        store.close()


if __name__ == "__main__":
    main()
