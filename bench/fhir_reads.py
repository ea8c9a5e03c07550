"""Reads: 32 concurrent clients reading random resources out of 100,000, through `hie serve`.

The load generator is wrk (Debian package `wrk`) with a Lua script that picks a random
resource per request. In the same run it measures the peer ceiling: a bare WSGI app on
granian (2 workers) serving the same rows from the same database, with no auth, no
audit and no framework.

    .venv/bin/python bench/fhir_reads.py --db sqlite --resources 100000 --seconds 20 --runs 3
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _harness import (
    PG_ADMIN,
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

LUA = textwrap.dedent(
    """
    local paths = {}
    local token = os.getenv("BENCH_TOKEN")
    for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
    math.randomseed(os.time())
    request = function()
      local path = paths[math.random(#paths)]
      return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
    end
    """
)

BARE_APP = textwrap.dedent(
    """
    import os, sqlite3, threading
    import psycopg
    URL = os.environ["BENCH_DB"]
    local = threading.local()
    def conn():
        c = getattr(local, "c", None)
        if c is None:
            if URL.startswith("sqlite"):
                c = sqlite3.connect(URL.split("///", 1)[1], check_same_thread=False)
            else:
                c = psycopg.connect(URL.replace("postgresql+psycopg", "postgresql"), autocommit=True)
            local.c = c
        return c
    SQL_LITE = "SELECT content FROM resource WHERE type=? AND id=?"
    SQL_PG = "SELECT content FROM resource WHERE type=%s AND id=%s"
    def app(environ, start_response):
        _, _, rtype, rid = environ["PATH_INFO"].split("/", 3)
        sql = SQL_LITE if URL.startswith("sqlite") else SQL_PG
        row = conn().execute(sql, (rtype, rid)).fetchone()
        start_response("200 OK", [("Content-Type", "application/fhir+json")])
        return [bytes(row[0])]
    """
)


def fill(env: dict[str, str], target: int, *, batch: int = 3000) -> None:
    """Cloned Synthea patients (bench/search_data.py) until the store holds ``target``.

    Each resource is written as the exchange's write path stores it — protected numbers
    sealed (``Protection.seal``), ``with_meta`` and canonical bytes, search and consent
    shape rows (``ShapeIndexer``) — through the store's own batched ``UnitOfWork.write``,
    a few thousand per transaction, as bench/search_generate.py does. Left out: validating
    every clone (each template is validated once; clones differ only in ids, identifier
    values and dates), the patient index's links and the fill's own audit records.
    Through ``process_bundle`` this took over 15 minutes for 100,000 on a busy machine.
    """
    from search_data import clones, templates
    from search_generate import versions

    from hie.app import utc_now
    from hie.consent.shapes import ShapeIndexer
    from hie.fhir.types import SERVED_TYPES
    from hie.fhir.validation import load_validator
    from hie.identity_wiring import build_identity
    from hie.search import Extractor, default_registry

    services = services_for(env)
    every = templates()
    validator = load_validator()
    for resources in every.values():
        for resource in resources:
            validator.check(resource)
    protection = build_identity(services.settings, clock=utc_now)["protection"]
    indexer = ShapeIndexer(
        Extractor(
            default_registry(),
            local_bases=[services.settings.fhir_base_url],
            resource_types=sorted(SERVED_TYPES),
        )
    )
    written, started, reported = 0, time.monotonic(), time.monotonic()
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal written, pending
        with services.store.unit_of_work(write=True) as uow:
            for version in versions([protection.seal(r) for r in pending], indexer):
                uow.write(version)
        written += len(pending)
        pending = []

    try:
        for _, resources in clones(every, 0):
            if written + len(pending) >= target:
                break
            pending += resources[: target - written - len(pending)]
            if len(pending) >= batch:
                flush()
            if time.monotonic() - reported > 30:
                rate = written / (time.monotonic() - started)
                print(f"# filled {written} resources, {rate:.0f}/s", flush=True)
                reported = time.monotonic()
        if pending:
            flush()
    finally:
        services.close()


def count_resources(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM resource")).scalar() or 0)
    except sa.exc.SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def filled_database(
    kind: str, tmp: Path, target: int, keep: Path | None, pg_name: str
) -> tuple[str, dict[str, str]]:
    """A database holding ``target`` resources, and the environment that serves it.

    With ``keep`` the database (SQLite file, or the PostgreSQL database ``pg_name``) and
    its data directory (signing key, keyring) live on in that directory and are reused
    by later runs instead of being filled again."""
    home = keep or tmp
    home.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        url = f"sqlite:///{home}/hie.db"
    else:
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"
    env = env_for(url, home / f"var-{kind}")
    if keep is not None and count_resources(url) >= target:
        print(f"# {kind}: reusing {count_resources(url)} resources in {home}")
        hie(env, "db", "upgrade")
        return url, env
    if kind == "sqlite":
        for stale in home.glob("hie.db*"):
            stale.unlink()
    url = fresh_database(kind, home, pg_name)
    env = env_for(url, home / f"var-{kind}")
    hie(env, "db", "upgrade")
    started = time.monotonic()
    fill(env, target)
    print(
        f"# {kind}: filled {count_resources(url)} resources in {time.monotonic() - started:.0f} s"
    )
    return url, env


def paths_file(db_url: str, out: Path, prefix: str) -> int:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT type, id FROM resource WHERE deleted = false")).all()
    engine.dispose()
    out.write_text("".join(f"{prefix}/{t}/{i}\n" for t, i in rows))
    return len(rows)


def wrk(url: str, lua: Path, seconds: float, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{int(seconds)}s", "--latency", "-s", str(lua), url],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency: dict[str, float] = {}
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            latency[pct] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": rate,
        "p50": latency.get("50", 0),
        "p99": latency.get("99", 0),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def bare(
    db_url: str, tmp: Path, paths: Path, lua: Path, seconds: float, env: dict[str, str]
) -> dict[str, float]:
    (tmp / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--workers",
            "2",
            "--port",
            str(port),
            "--no-ws",
            "bare_app:app",
        ],
        cwd=tmp,
        env={**env, "BENCH_DB": db_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)
        bare_paths = tmp / "bare_paths.txt"
        bare_paths.write_text(paths.read_text().replace("/fhir/", "/x/"))
        return wrk(
            f"http://127.0.0.1:{port}",
            lua,
            seconds,
            {**env, "BENCH_PATHS": str(bare_paths), "BENCH_TOKEN": "none"},
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def served_env(env: dict[str, str], mode: str, baseline: Path | None) -> dict[str, str]:
    """``on``: this tree as configured (consent point and audit on); ``off``: this tree
    with permit-all and no audit; ``base``: the tree at ``baseline``, as configured."""
    out = {**env, "HIE_HTTP_PORT": str(free_port())}
    if mode == "off":
        out |= {"HIE_AUDIT_ENABLED": "false", "HIE_CONSENT_ENABLED": "false"}
    if mode == "base" and baseline is not None:
        out["PYTHONPATH"] = str(baseline)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the filled database here")
    parser.add_argument("--pg-name", default="hie_bench_reads", help="PostgreSQL database")
    parser.add_argument("--baseline", type=Path, help="another checkout served in the same run")
    parser.add_argument("--off", action="store_true", help="also serve permit-all, no audit")
    parser.add_argument("--no-peer", action="store_true", help="skip the bare WSGI peer")
    args = parser.parse_args()
    print(
        f"# machine: {machine()}; load generator: wrk -t2 -c32 (Lua: random resource per request)"
    )
    modes = ["on"] + (["base"] if args.baseline else []) + (["off"] if args.off else [])
    for kind in args.db or ["sqlite"]:
        with workdir() as tmp:
            url, env = filled_database(kind, tmp, args.resources, args.keep, args.pg_name)
            count = paths_file(url, tmp / "paths.txt", "/fhir")
            print(f"# {kind}: reading {count} resources")
            if kind == "sqlite":  # the first mode served should not pay for a cold page cache
                with open(url.split("///", 1)[1], "rb") as db:
                    while db.read(1 << 24):
                        pass
            lua = tmp / "reads.lua"
            lua.write_text(LUA)
            results: dict[str, list[dict[str, float]]] = {}
            for run in range(args.runs):
                # Alternate the order so that the machine's load falls on every mode.
                for mode in modes if run % 2 == 0 else modes[::-1]:
                    served = served_env(env, mode, args.baseline)
                    with serving(served) as base:
                        root = base.rsplit("/fhir", 1)[0]
                        token = hie(served, "token", "--scope", "system/*.rs")
                        wrk_env = {
                            **served,
                            "BENCH_PATHS": str(tmp / "paths.txt"),
                            "BENCH_TOKEN": token,
                        }
                        wrk(root, lua, 3, wrk_env)  # warm-up
                        r = wrk(root, lua, args.seconds, wrk_env)
                    r["load"] = os.getloadavg()[0]
                    results.setdefault(mode, []).append(r)
                    print(
                        f"{kind} run {run + 1} {mode}: {r['rate']:.0f} reads/s p50 {r['p50']:.2f} ms "
                        f"p99 {r['p99']:.2f} ms non-2xx {r['non2xx']:.0f} load {r['load']:.1f}",
                        flush=True,
                    )
            if not args.no_peer:
                for _ in range(args.runs):
                    r = bare(url, tmp, tmp / "paths.txt", lua, args.seconds, env)
                    r["load"] = os.getloadavg()[0]
                    results.setdefault("bare WSGI peer", []).append(r)
            for mode, rs in results.items():
                print(
                    f"{kind} {mode} median: {median([r['rate'] for r in rs]):.0f} reads/s, "
                    f"p50 {median([r['p50'] for r in rs]):.2f} ms, "
                    f"p99 {median([r['p99'] for r in rs]):.2f} ms (load {min(r['load'] for r in rs):.1f}"
                    f"-{max(r['load'] for r in rs):.1f})"
                )
            if "off" in results:
                off = median([r["rate"] for r in results["off"]])
                for mode in ("on", "base"):
                    if mode in results:
                        on = median([r["rate"] for r in results[mode]])
                        print(
                            f"{kind} {mode} vs permit-all, no audit: {100 * (1 - on / off):+.1f}% lost"
                        )


if __name__ == "__main__":
    main()
