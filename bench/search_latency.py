"""Search latency at a million resources, through `hie serve`, with wrk.

    .venv/bin/python bench/search_latency.py [--seconds 15] [--db hie_bench_search]

Needs the data set of bench/search_generate.py (and its manifest in bench/out/). For each
scenario, a few hundred request URLs over different patients, identifiers and months
are rotated by a wrk Lua script, first with one connection and then with sixteen
(two wrk threads). wrk reports p50/p99 and requests/s; any non-2xx answer fails the run.

It also prints, in-process, the SQL each scenario runs with ``EXPLAIN (ANALYZE, BUFFERS)``
(bench/out/search_explain.txt) and the size of the search index per resource.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _harness import PG_ADMIN, env_for, hie, machine, serving, workdir

OUT = Path(__file__).parent / "out"
HOSPITAL = "http://hospital.smarthealthit.org"
LOINC = "http://loinc.org"
WEIGHT = "29463-7"  # Body Weight: one of the commonest codes, a few per patient visit

Scenario = tuple[str, Callable[[dict[str, Any], random.Random], str]]


def month(rng: random.Random) -> str:
    y, m = rng.randint(1990, 2024), rng.randint(1, 12)
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return f"date=ge{y}-{m:02d}-01&date=lt{ny}-{nm:02d}-01"


SCENARIOS: list[Scenario] = [
    (
        "Patient by identifier",
        lambda p, r: f"/fhir/Patient?identifier={HOSPITAL}|{p['mrn']}",
    ),
    (
        "Observation by subject and code",
        lambda p, r: f"/fhir/Observation?subject=Patient/{p['id']}&code={LOINC}|{WEIGHT}",
    ),
    (
        "Observation by code and date range, -date, _count=20",
        lambda p, r: f"/fhir/Observation?code={LOINC}|{WEIGHT}&{month(r)}&_sort=-date&_count=20",
    ),
    (
        "Observation by chained subject.identifier",
        lambda p, r: f"/fhir/Observation?subject.identifier={HOSPITAL}|{p['mrn']}",
    ),
    (
        "Patient with _revinclude of its encounters",
        lambda p, r: f"/fhir/Patient?_id={p['id']}&_revinclude=Encounter:patient",
    ),
]


def lua(paths: list[str], token: str) -> str:
    items = ",\n".join(json.dumps(p) for p in paths)
    return f"""
local paths = {{
{items}
}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], {{["Authorization"] = "Bearer {token}"}})
end
"""


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "us" else value * 1000 if m.group(2) == "s" else value


def wrk(base: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{bad.group(1)} failed requests:\n{out}")
    distribution = out.split("Latency Distribution", 1)[1]
    p50 = re.search(r"^\s+50%\s+(\S+)", distribution, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", distribution, re.M)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not (p50 and p99 and rate):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return {"p50": _ms(p50.group(1)), "p99": _ms(p99.group(1)), "rps": float(rate.group(1))}


def explain(db_url: str, paths: dict[str, str]) -> str:
    """Every SQL statement each scenario's first URL runs, with its plan."""
    from urllib.parse import parse_qsl, urlsplit

    from hie.app import build_services
    from hie.context import RequestContext
    from hie.settings import Settings

    services = build_services(Settings().replace(database__url=db_url))
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, params))

    sa.event.listen(services.engine, "before_cursor_execute", capture)
    ctx = RequestContext.system()
    lines: list[str] = []
    for name, path in paths.items():
        parts = urlsplit(path)
        segments = parts.path.split("/")[2:]
        params = parse_qsl(parts.query)
        captured.clear()
        if segments[-1] == "$everything":
            services.exchange.everything(ctx, segments[1], params)
        else:
            services.exchange.search(ctx, segments[0], params)
        lines.append(f"=== {name}: {path}")
        with services.engine.connect() as conn:
            for statement, params_ in list(captured):
                plan = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params_
                ).all()
                lines += ["", statement.strip(), *(row[0] for row in plan)]
        lines.append("")
    services.close()
    return "\n".join(lines)


def in_process(db_url: str, scenarios: list[tuple[str, list[str]]], rounds: int) -> str:
    """The exchange call and the Bundle rendering alone, one caller: what a search costs
    before HTTP, authentication and the server's scheduling."""
    import statistics
    import time
    from urllib.parse import parse_qsl, urlsplit

    from hie.app import build_services
    from hie.context import RequestContext
    from hie.settings import Settings

    services = build_services(Settings().replace(database__url=db_url))
    ctx = RequestContext.system()
    lines = ["| scenario | in-process p50 ms | p99 ms | entries |", "|---|---|---|---|"]
    for name, urls in scenarios:
        times: list[float] = []
        entries = 0
        for path in (urls * rounds)[: max(len(urls), 60)]:
            parts = urlsplit(path)
            segments = parts.path.split("/")[2:]
            params = parse_qsl(parts.query)
            started = time.perf_counter()
            if segments[-1] == "$everything":
                result = services.exchange.everything(ctx, segments[1], params)
            else:
                result = services.exchange.search(ctx, segments[0], params)
            services.exchange.render_search(result)
            times.append((time.perf_counter() - started) * 1000)
            entries += len(result.entries) + len(result.included)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        lines.append(
            f"| {name} | {statistics.median(times):.1f} | {p99:.1f} | {entries / len(times):.0f} |"
        )
    services.close()
    return "\n".join(lines)


def sizes(db_url: str) -> str:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        resources = conn.exec_driver_sql("SELECT count(*) FROM resource").scalar_one()
        rows = conn.exec_driver_sql(
            "SELECT relname, pg_total_relation_size(relid), pg_relation_size(relid), n_live_tup "
            "FROM pg_stat_user_tables ORDER BY 2 DESC"
        ).all()
    engine.dispose()
    index = [r for r in rows if r[0].startswith("idx_")]
    total = sum(r[1] for r in index)
    heap = sum(r[2] for r in index)
    count = sum(r[3] for r in index)
    lines = [
        f"resources: {resources}",
        f"search index: {total / resources:.0f} bytes per resource "
        f"({heap / resources:.0f} in rows, {(total - heap) / resources:.0f} in B-tree indexes), "
        f"{count / resources:.1f} rows per resource, {total / 2**30:.2f} GiB in all",
    ]
    for name, size, _, n in rows:
        if name.startswith(("idx_", "resource")):
            lines.append(f"  {name}: {size / resources:.0f} B/resource, {n} rows")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="hie_bench_search")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--urls", type=int, default=300)
    parser.add_argument("--skip-explain", action="store_true")
    args = parser.parse_args()
    manifest = json.loads((OUT / "search_manifest.json").read_text())
    db_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{args.db}"
    rng = random.Random(42)
    patients = manifest["patients"]
    print(f"# machine: {machine()}")
    print(sizes(db_url))
    scenarios = [
        (name, [make(rng.choice(patients), rng) for _ in range(args.urls)])
        for name, make in SCENARIOS
    ]
    scenarios.append(
        (
            "$everything of a patient with ~1,000 resources",
            [f"/fhir/Patient/{b['id']}/$everything?_count=1000" for b in manifest["big"]],
        )
    )
    print(in_process(db_url, scenarios, 3))
    if not args.skip_explain:
        (OUT / "search_explain.txt").write_text(
            explain(db_url, {name: urls[0] for name, urls in scenarios})
        )
        print(f"# plans: {OUT / 'search_explain.txt'}")
    with workdir() as tmp:
        env = env_for(db_url, tmp / "var")
        with serving(env) as base:
            token = hie(env, "token", "--scope", "system/*.cruds", "--ttl", "36000")
            origin = base.rsplit("/fhir", 1)[0]
            print("| scenario | clients | p50 ms | p99 ms | requests/s |")
            print("|---|---|---|---|---|")
            for name, urls in scenarios:
                script = tmp / "paths.lua"
                script.write_text(lua(urls, token))
                wrk(origin, script, 1, 3)  # warm-up
                for connections in (1, 16):
                    got = wrk(origin, script, connections, args.seconds)
                    print(
                        f"| {name} | {connections} | {got['p50']:.1f} | {got['p99']:.1f} "
                        f"| {got['rps']:.0f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
