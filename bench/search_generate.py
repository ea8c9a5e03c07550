"""Fill a PostgreSQL database with cloned Synthea patients for the search benchmarks.

    .venv/bin/python bench/search_generate.py --resources 1000000 [--db hie_bench_search]

Each clone of a Synthea patient gets new ids, suffixed identifiers and dates moved by
up to ten years (bench/search_data.py). A few "big" patients merge three patients'
records (about 1,000 resources each) for $everything.

The resources go through the store's own write path, as the exchange writes them:
``with_meta`` + canonical bytes, ``Extractor.extract`` for the index rows and
``UnitOfWork.write`` (which batches inserts per table), a few thousand resources per
transaction. Only validation is left out: the templates are validated once up front
and clones differ from them only in ids, identifier values and dates. At the end the
tables are VACUUM ANALYZEd and a manifest of patients, identifiers and the big patients
is written next to this script for bench/search_latency.py.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from _harness import PG_ADMIN, machine
from search_data import big_template, clone, clones, templates

from hie.fhir.canonical import dumps, with_meta
from hie.fhir.types import SERVED_TYPES
from hie.fhir.validation import load_validator
from hie.search import Extractor, default_registry
from hie.search.rows import IndexRow
from hie.storage.ports import NewVersion
from hie.storage.sql.engine import build_engine
from hie.storage.sql.migrate import upgrade
from hie.storage.sql.store import SqlStore

MANIFEST = Path(__file__).parent / "out" / "search_manifest.json"
HOSPITAL = "http://hospital.smarthealthit.org"


class _Extract(Protocol):
    def extract(self, resource: Mapping[str, Any]) -> list[IndexRow]: ...


def create_database(name: str) -> str:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def versions(resources: list[dict[str, Any]], extractor: _Extract) -> list[NewVersion]:
    """Each resource's first version, as the store's write path stores it."""
    now = datetime.now(UTC)
    out = []
    for resource in resources:
        body = with_meta(resource, id_=resource["id"], version=1, last_updated=now)
        out.append(
            NewVersion(
                type=body["resourceType"],
                id=body["id"],
                version=1,
                last_updated=now,
                deleted=False,
                content=dumps(body),
                method="PUT",
                rows=extractor.extract(body),
            )
        )
    return out


def patient_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    mrn = next(
        (i["value"] for i in patient.get("identifier", []) if i.get("system") == HOSPITAL), None
    )
    return {"id": patient["id"], "mrn": mrn, "resources": len(resources)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="hie_bench_search", help="database to (re)create")
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=5, help="patients with ~1,000 resources")
    parser.add_argument("--batch", type=int, default=3000, help="resources per transaction")
    args = parser.parse_args()
    print(f"# machine: {machine()}")
    url = create_database(args.db)
    engine = build_engine(url, pool_size=2)
    upgrade(engine)
    store = SqlStore(engine)
    extractor = Extractor(default_registry(), resource_types=sorted(SERVED_TYPES))
    validator = load_validator()
    every = templates()
    for resources in every.values():
        for resource in resources:
            validator.check(resource)
    big = big_template(every)
    manifest: dict[str, Any] = {"patients": [], "big": [], "database": args.db}
    written = 0
    started = time.monotonic()
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal written, pending
        if not pending:
            return
        batch = versions(pending, extractor)
        with store.unit_of_work(write=True) as uow:
            for new in batch:
                uow.write(new)
        written += len(pending)
        pending = []

    for n in range(args.big):
        resources = clone(big, 10_000_000 + n, 0)
        manifest["big"].append(patient_of(resources))
        pending += resources
        flush()
    last_report = time.monotonic()
    for _, resources in clones(every, 0):
        if written + len(pending) >= args.resources:
            break
        manifest["patients"].append(patient_of(resources))
        pending += resources
        if len(pending) >= args.batch:
            flush()
        if time.monotonic() - last_report > 30:
            rate = written / (time.monotonic() - started)
            print(f"# {written} resources, {rate:.0f}/s", flush=True)
            last_report = time.monotonic()
    flush()
    elapsed = time.monotonic() - started
    print(f"written: {written} resources in {elapsed:.0f} s ({written / elapsed:.0f}/s)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    MANIFEST.parent.mkdir(exist_ok=True)
    MANIFEST.write_text(json.dumps(manifest))
    print(f"manifest: {MANIFEST} ({len(manifest['patients'])} patients)")
    store.close()


if __name__ == "__main__":
    main()
