"""Ingest: Synthea transaction bundles, rewritten with fresh ids, POSTed to `hie serve`.

Prints resources/s through the HTTP server as it runs in production (granian, 2 workers),
and in the same run the limit "validate with fhir.resources + raw insert" on the same
data with the same two cores, and the ratio between them.

    .venv/bin/python bench/fhir_ingest.py --db sqlite --db postgresql --seconds 30 --runs 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
import uuid
from typing import Any

import orjson
import requests
import sqlalchemy as sa
from _harness import SHARED, env_for, fresh_database, hie, machine, median, serving, workdir

BUNDLES = SHARED / "fhir" / "synthea-bundles"
SKIP = {  # these fail by design (unresolvable conditional references, an invalid element)
    "Bob965_Keeling57_3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b.json",
    "Cecelia952_Romaguera67_f1731e33-dc55-4ee8-72d7-cece2e49bedd.json",
    "uscore_bundle_patient_355.json",
}


def templates() -> list[dict[str, Any]]:
    found = [
        orjson.loads(p.read_bytes()) for p in sorted(BUNDLES.glob("*.json")) if p.name not in SKIP
    ]
    if not found:
        raise SystemExit(f"no Synthea bundles in {BUNDLES} (set HIE_BENCH_TESTDATA)")
    return found


def fresh_copy(bundle: dict[str, Any]) -> tuple[bytes, int]:
    """The bundle with every fullUrl and client id replaced by a new one."""
    text = orjson.dumps(bundle).decode()
    for entry in bundle["entry"]:
        full = entry.get("fullUrl", "")
        if full.startswith("urn:uuid:"):
            text = text.replace(full, f"urn:uuid:{uuid.uuid4()}")
    data = orjson.loads(text)
    for entry in data["entry"]:
        request = entry["request"]
        if request["method"] == "PUT":  # client-assigned ids become fresh POSTs
            resource = entry["resource"]
            old = f"{resource['resourceType']}/{resource.pop('id')}"
            full = entry.get("fullUrl", "")
            new = full if full.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}"
            entry["fullUrl"] = new
            entry["request"] = {"method": "POST", "url": resource["resourceType"]}
            data = orjson.loads(orjson.dumps(data).decode().replace(f'"{old}"', f'"{new}"'))
    return orjson.dumps(data), len(data["entry"])


def run_http(
    base: str, token: str, pool: list[tuple[bytes, int]], seconds: float, clients: int
) -> dict[str, float]:
    done = {"resources": 0, "bundles": 0, "errors": 0}
    samples: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    def worker() -> None:
        session = requests.Session()
        session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/fhir+json",
                "Prefer": "return=minimal",
            }
        )
        while time.monotonic() < stop:
            body, count = pool[next(counter) % len(pool)]
            r = session.post(base, data=body, timeout=300)
            with lock:
                if r.status_code == 200:
                    done["resources"] += count
                    done["bundles"] += 1
                else:
                    done["errors"] += 1
                    if len(samples) < 3:
                        samples.append(f"{r.status_code} {r.text[:300]}")

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    for sample in samples:
        print(f"# error: {sample}")
    return {"rate": done["resources"] / elapsed, **done}


def _limit_worker(args: tuple[str, list[bytes]]) -> int:
    from fhir.resources.R4B import get_fhir_model_class

    url, bundles = args
    engine = sa.create_engine(url)
    table = sa.table("raw", sa.column("id"), sa.column("content"))
    count = 0
    for body in bundles:
        rows = []
        for entry in orjson.loads(body)["entry"]:
            resource = entry["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            rows.append({"id": str(uuid.uuid4()), "content": orjson.dumps(resource)})
        with engine.begin() as conn:
            conn.execute(sa.insert(table), rows)
        count += len(rows)
    engine.dispose()
    return count


def run_limit(db_url: str, pool: list[tuple[bytes, int]], seconds: float) -> float:
    """Two processes: model_validate every resource, then one raw INSERT per bundle."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS raw"))
        conn.execute(
            sa.text(
                "CREATE TABLE raw (id VARCHAR(64) PRIMARY KEY, content BYTEA)".replace(
                    "BYTEA", "BLOB" if db_url.startswith("sqlite") else "BYTEA"
                )
            )
        )
        if db_url.startswith("sqlite"):
            conn.execute(sa.text("PRAGMA journal_mode=WAL"))
    engine.dispose()
    per_round = [body for body, _ in pool]
    total = sum(n for _, n in pool)
    rounds = max(1, int(seconds * 2500 / total))  # about `seconds` of work at the expected rate
    work = per_round * rounds
    halves = [(db_url, work[0::2]), (db_url, work[1::2])]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(2) as procs:
        count = sum(procs.map(_limit_worker, halves))
    return count / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"# machine: {machine()}")
    pool = [fresh_copy(b) for b in templates() for _ in range(2)]
    print(f"# {len(pool)} bundles, {sum(n for _, n in pool)} resources in the pool")
    for kind in args.db or ["sqlite"]:
        rates, limits = [], []
        for run in range(args.runs):
            with workdir() as tmp:
                url = fresh_database(kind, tmp)
                env = env_for(url, tmp / "var")
                with serving(env) as base:
                    token = hie(env, "token")
                    result = run_http(base, token, pool, args.seconds, args.clients)
                limit_url = (
                    fresh_database(kind, tmp, name="hie_bench_limit")
                    if kind == "postgresql"
                    else f"sqlite:///{tmp}/limit.db"
                )
                limit = run_limit(limit_url, pool, args.seconds)
            rates.append(result["rate"])
            limits.append(limit)
            print(
                f"{kind} run {run + 1}: hie {result['rate']:.0f} resources/s "
                f"({result['bundles']} bundles, {result['errors']} errors); limit {limit:.0f}/s"
            )
        print(
            f"{kind}: median hie {median(rates):.0f} resources/s, limit {median(limits):.0f}/s, "
            f"ratio {median(rates) / median(limits):.2f}"
        )


if __name__ == "__main__":
    main()
