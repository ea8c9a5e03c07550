"""What audit costs: reads and searches through `hie serve`, audit off vs on, same run.

One populated database (bench/fhir_reads.py's fill); the server is started alternately
with ``audit.enabled = false`` and ``consent.enabled = false`` (permit-all and no audit:
the baseline) and with audit on (every request's record is
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
from pathlib import Path

import sqlalchemy as sa
from _harness import (
    free_port,
    hie,
    machine,
    median,
    serving,
    workdir,
)
from fhir_reads import LUA, filled_database, paths_file, wrk


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
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the filled database here")
    parser.add_argument("--pg-name", default="hie_bench_reads", help="PostgreSQL database")
    args = parser.parse_args()
    print(f"# machine: {machine()}; load generator: wrk -t2 -c32, random URL per request")
    for kind in args.db or ["sqlite"]:
        with workdir() as tmp:
            url, env = filled_database(kind, tmp, args.resources, args.keep, args.pg_name)
            count = paths_file(url, tmp / "reads.txt", "/fhir")
            patients = search_paths(url, tmp / "searches.txt")
            print(f"# {kind}: {count} resources ({patients} patients)")
            lua = tmp / "urls.lua"
            lua.write_text(LUA)
            results: dict[tuple[str, str], list[dict[str, float]]] = {}
            for run in range(args.runs):
                modes = ("off", "on") if run % 2 == 0 else ("on", "off")
                for mode in modes:
                    served = {
                        **env,
                        "HIE_AUDIT_ENABLED": "false" if mode == "off" else "true",
                        "HIE_CONSENT_ENABLED": "false" if mode == "off" else "true",
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
