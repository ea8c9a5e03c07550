"""What audit costs: reads and searches through `hie serve`, audit off vs on, same run.

One populated database; the server is started alternately with ``audit.enabled = false``
(permit-all and no audit: the baseline) and with audit on (every request's record is
journalled before it is answered and drained into the hash chain in batches; the audit
rows written are counted at the end), in alternating order so that the machine's
background load falls on both. wrk with 32 connections (2 threads) and a Lua script that
picks a random URL per request: reads of random resources, and searches of a random
patient's observations (``Observation?subject=Patient/x&_count=10``).

    .venv/bin/python bench/audit_overhead.py --db sqlite --resources 100000 --seconds 15 --runs 3
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import uuid
from pathlib import Path

import orjson
import sqlalchemy as sa
from _harness import (
    ROOT,
    SHARED,
    env_for,
    free_port,
    fresh_database,
    hie,
    machine,
    median,
    services_for,
    serving,
    workdir,
)
from fhir_reads import LUA, paths_file, wrk

UUID = re.compile(r"urn:uuid:[0-9a-f-]{36}")


def _fresh_ids(text: str) -> str:
    fresh: dict[str, str] = {}
    return UUID.sub(lambda m: fresh.setdefault(m.group(0), f"urn:uuid:{uuid.uuid4()}"), text)


def fill(env: dict[str, str], target: int) -> None:
    """Synthea transaction bundles with fresh ids (one pass per bundle) until ``target``."""
    from hie.context import RequestContext

    services = services_for(env)
    ctx = RequestContext.system(actor="bench-fill")
    # The shared test data sits next to the checkout (or two levels up from a worktree).
    shared = next(
        (d / "shared" / "testdata" for d in ROOT.parents if (d / "shared" / "testdata").is_dir()),
        SHARED,
    )
    bundles = sorted((shared / "fhir" / "synthea-bundles").glob("*.transaction.json"))
    if not bundles:
        raise SystemExit(f"no Synthea bundles under {shared}")
    texts = [p.read_text() for p in bundles]
    written = 0
    try:
        while written < target:
            for text in texts:
                renamed = _fresh_ids(text)
                bundle = orjson.loads(renamed)
                try:
                    services.exchange.process_bundle(ctx, bundle)
                except Exception as exc:
                    print(f"# skipped a bundle: {exc}", file=sys.stderr, flush=True)
                    continue
                written += len(bundle["entry"])
                if written >= target:
                    break
    finally:
        services.close()


def search_paths(db_url: str, out: Path) -> int:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        ids = [
            r[0] for r in conn.execute(sa.text("SELECT id FROM resource WHERE type = 'Patient'"))
        ]
    engine.dispose()
    out.write_text("".join(f"/fhir/Observation?subject=Patient/{i}&_count=10\n" for i in ids))
    return len(ids)


def audit_rows(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar()
    engine.dispose()
    return int(count or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"# machine: {machine()}; load generator: wrk -t2 -c32, random URL per request")
    for kind in args.db or ["sqlite"]:
        with workdir() as tmp:
            url = fresh_database(kind, tmp)
            env = env_for(url, tmp / "var")
            hie(env, "db", "upgrade")
            started = time.monotonic()
            fill(env, args.resources)
            count = paths_file(url, tmp / "reads.txt", "/fhir")
            patients = search_paths(url, tmp / "searches.txt")
            print(
                f"# {kind}: {count} resources ({patients} patients) filled in "
                f"{time.monotonic() - started:.0f} s"
            )
            lua = tmp / "urls.lua"
            lua.write_text(LUA)
            results: dict[tuple[str, str], list[dict[str, float]]] = {}
            for run in range(args.runs):
                modes = ("off", "on") if run % 2 == 0 else ("on", "off")
                for mode in modes:
                    served = {
                        **env,
                        "HIE_AUDIT_ENABLED": "false" if mode == "off" else "true",
                        "HIE_HTTP_PORT": str(free_port()),
                    }
                    with serving(served) as base:
                        root = base.rsplit("/fhir", 1)[0]
                        token = hie(served, "token", "--scope", "system/*.rs")
                        for workload in ("reads", "searches"):
                            wrk_env = {
                                **served,
                                "BENCH_PATHS": str(tmp / f"{workload}.txt"),
                                "BENCH_TOKEN": token,
                            }
                            wrk(root, lua, 3, wrk_env)  # warm-up
                            r = wrk(root, lua, args.seconds, wrk_env)
                            r["load"] = os.getloadavg()[0]
                            results.setdefault((workload, mode), []).append(r)
                            print(
                                f"{kind} run {run + 1} {workload} audit {mode}: "
                                f"{r['rate']:.0f}/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms "
                                f"non-2xx {r['non2xx']:.0f} load {r['load']:.1f}",
                                flush=True,
                            )
            print(f"# {kind}: {audit_rows(url)} audit records written during the runs")
            for workload in ("reads", "searches"):
                off = median([r["rate"] for r in results[(workload, "off")]])
                on = median([r["rate"] for r in results[(workload, "on")]])
                p99_off = median([r["p99"] for r in results[(workload, "off")]])
                p99_on = median([r["p99"] for r in results[(workload, "on")]])
                print(
                    f"{kind} {workload}: audit off {off:.0f}/s (p99 {p99_off:.1f} ms), "
                    f"audit on {on:.0f}/s (p99 {p99_on:.1f} ms): "
                    f"{100 * (1 - on / off):+.1f}% throughput lost"
                )


if __name__ == "__main__":
    main()
