"""Reads: 32 concurrent clients reading random resources out of 100,000, through `hie serve`.

The load generator is wrk (Debian package `wrk`) with a Lua script that picks a random
resource per request. In the same run it measures the peer ceiling: a bare WSGI app on
granian (2 workers) serving the same rows from the same database, with no auth, no
audit and no framework.

    .venv/bin/python bench/fhir_reads.py --db sqlite --resources 100000 --seconds 20 --runs 3
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from _harness import (
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


def fill(env: dict[str, str], target: int) -> None:
    """Load Synthea bundles with fresh fullUrls until the store holds ``target`` resources."""
    from hie.context import RequestContext

    services = services_for(env)
    ctx = RequestContext.system(actor="bench-fill")
    bundles = [
        orjson.loads(p.read_bytes())
        for p in sorted((SHARED / "fhir" / "synthea-bundles").glob("*.transaction.json"))
    ]
    written = 0
    try:
        while written < target:
            for template in bundles:
                text = orjson.dumps(template).decode()
                for full in re.findall(r"urn:uuid:[0-9a-f-]{36}", text):
                    text = text.replace(full, f"urn:uuid:{uuid.uuid4()}")
                bundle: dict[str, Any] = orjson.loads(text)
                services.exchange.process_bundle(ctx, copy.deepcopy(bundle))
                written += len(bundle["entry"])
                if written >= target:
                    break
    finally:
        services.close()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"# machine: {machine()}; load generator: wrk -t2 -c32 (Lua: random resource per request)"
    )
    for kind in args.db or ["sqlite"]:
        with workdir() as tmp:
            url = fresh_database(kind, tmp)
            env = env_for(url, tmp / "var")
            hie(env, "db", "upgrade")
            started = time.monotonic()
            fill(env, args.resources)
            count = paths_file(url, tmp / "paths.txt", "/fhir")
            print(f"# {kind}: filled {count} resources in {time.monotonic() - started:.0f} s")
            lua = tmp / "reads.lua"
            lua.write_text(LUA)
            ours, peer = [], []
            with serving(env) as base:
                token = hie(env, "token", "--scope", "system/*.rs")
                wrk_env = {**env, "BENCH_PATHS": str(tmp / "paths.txt"), "BENCH_TOKEN": token}
                wrk(base.rsplit("/fhir", 1)[0], lua, 5, wrk_env)  # warm-up
                for _ in range(args.runs):
                    ours.append(wrk(base.rsplit("/fhir", 1)[0], lua, args.seconds, wrk_env))
            for _ in range(args.runs):
                peer.append(bare(url, tmp, tmp / "paths.txt", lua, args.seconds, env))
            for name, results in (("hie", ours), ("bare WSGI on granian", peer)):
                for r in results:
                    print(
                        f"{kind} {name}: {r['rate']:.0f} reads/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms non-2xx {r['non2xx']:.0f}"
                    )
                print(
                    f"{kind} {name} median: {median([r['rate'] for r in results]):.0f} reads/s, "
                    f"p50 {median([r['p50'] for r in results]):.2f} ms, p99 {median([r['p99'] for r in results]):.2f} ms"
                )


if __name__ == "__main__":
    main()
