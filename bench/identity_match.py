"""Probabilistic match of a new source record against the card population's index.

    python bench/identity_match.py                                # this tree
    python bench/identity_match.py --baseline /tmp/main-tree      # A/B, same run

Uses the population of bench/card_identify.py (PostgreSQL ``hie_bench_card``): cards
imported by `hie card import` and their holders enrolled in the master patient index by
the product's bulk path, each a card-source and an enterprise Patient with its blocking
keys. New source records then arrive as hospital Patients *without* a resident ID number
(so the match is probabilistic): half are records of enrolled holders as a hospital
keeps them (the name split into family and given, day and month sometimes swapped, a
phone sometimes mistyped or missing, an MRN), half are people the index does not know.

Per record: the matching step alone (blocking query, candidates opened, Fellegi-Sunter:
``MasterPatientIndex.match`` in a read-only unit of work) and the whole write through
``Exchange.create`` (seal, store, match, link, enterprise Patient rewrite, audit,
commit). Each tree and round writes records of different people, so no run matches
another's writes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("HIE_BENCH_TREE") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

from bench._harness import PG_ADMIN, machine  # noqa: E402
from bench.card_data import person  # noqa: E402
from hie.app import build_services  # noqa: E402
from hie.context import RequestContext, Scopes  # noqa: E402
from hie.settings import Settings  # noqa: E402
from hie.storage.sql.engine import build_engine  # noqa: E402

DATA_DIR = Path("/tmp") / "hie-bench-card-var"
DB_URL = PG_ADMIN.rsplit("/", 1)[0] + "/hie_bench_card"
NEW_PEOPLE = 6_000_000  # person numbers from here on are not in the population


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):.2f} ms, p95 {percentile(values, 95):.2f} ms, "
        f"p99 {percentile(values, 99):.2f} ms, max {max(values):.2f} ms"
    )


def hospital_record(i: int, rng: random.Random, hospital: str) -> dict[str, Any]:
    """Person ``i`` as a hospital without the resident ID number keeps them."""
    p = person(i)
    name = p["name"]
    family, given = (name[:2], name[2:]) if name[:2] in ("欧阳", "司马") else (name[0], name[1:])
    born = p["birth_date"]
    year, month, day = born.split("-")
    if rng.random() < 0.1 and int(day) <= 12 and day != month:
        born = f"{year}-{day}-{month}"
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": f"urn:hie:mrn:{hospital}", "value": f"M{i}"}],
        "name": [{"family": family, "given": [given]}],
        "gender": p["gender"],
        "birthDate": born,
        "address": [{"text": p["address"]}],
    }
    roll = rng.random()
    if roll < 0.8:
        phone = p["phone"]
        if roll < 0.1:
            phone = phone[:-1] + str((int(phone[-1]) + 1) % 10)
        body["telecom"] = [{"system": "phone", "value": phone}]
    return body


def enrolled_people(count: int, seed: int) -> list[int]:
    """Person numbers (bench/card_data.py) of enrolled holders, at random."""
    engine = build_engine(DB_URL)
    with engine.connect() as conn:
        top = int(conn.exec_driver_sql("SELECT max(id) FROM card_person").scalar_one())
        rng = random.Random(seed)
        found: list[int] = []
        while len(found) < count:
            ids = sorted({rng.randrange(1, top + 1) for _ in range(count * 4)})
            rows = conn.exec_driver_sql(
                "SELECT c.card_no FROM card c JOIN card_person p ON p.id = c.person_id "
                "WHERE p.id = ANY(%(ids)s) AND p.patient IS NOT NULL",
                {"ids": ids},
            ).all()
            # card serial i + 1 belongs to person i (bench/card_data.py)
            found.extend(int(r[0][5:15]) - 1 for r in rows)
        rng.shuffle(found)
    engine.dispose()
    return found[:count]


def probes(known: list[int], tag: int) -> list[dict[str, Any]]:
    rng = random.Random(tag)
    out = [hospital_record(i, rng, f"h{tag}") for i in known]
    out += [
        hospital_record(NEW_PEOPLE + tag % 5000 * 1_000 + n, rng, f"h{tag}")
        for n in range(len(known))
    ]
    rng.shuffle(out)
    return out


def measure(bodies: list[dict[str, Any]], hospital: str) -> dict[str, Any]:
    services = build_services(Settings().replace(database__url=DB_URL, data__dir=str(DATA_DIR)))
    try:
        ops = services.exchange.identity
        assert ops is not None
        ctx = RequestContext(
            actor="bench", organization=f"Organization/{hospital}", scopes=Scopes("system/*.cruds")
        )
        match_ms: list[float] = []
        write_ms: list[float] = []
        outcomes: Counter[str] = Counter()
        for body in bodies[:20]:  # warm caches and code paths (not timed, not written)
            with services.store.unit_of_work(write=False) as uow:
                ops.mpi.match(uow, body)
        match_cpu: list[float] = []
        write_cpu: list[float] = []
        for body in bodies:
            started, cpu = time.perf_counter(), time.thread_time()
            with services.store.unit_of_work(write=False) as uow:
                results = ops.mpi.match(uow, body)
            match_ms.append((time.perf_counter() - started) * 1000)
            match_cpu.append((time.thread_time() - cpu) * 1000)
            outcomes[results[0].outcome.value if results else "NO_MATCH"] += 1
            started, cpu = time.perf_counter(), time.thread_time()
            services.exchange.create(ctx, "Patient", body)
            write_ms.append((time.perf_counter() - started) * 1000)
            write_cpu.append((time.thread_time() - cpu) * 1000)
        return {
            "matching step": match_ms,
            "matching, CPU": match_cpu,
            "whole write": write_ms,
            "whole write, CPU": write_cpu,
            "outcomes": dict(outcomes),
        }
    finally:
        services.close()


def baseline(tree: str, probes_file: str, hospital: str) -> dict[str, Any]:
    env = {**os.environ, "HIE_BENCH_TREE": tree, "PYTHONPATH": tree}
    done = subprocess.run(
        [sys.executable, __file__, "--measure", probes_file, "--hospital", hospital],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def population() -> str:
    engine = build_engine(DB_URL)
    with engine.connect() as conn:
        cards = conn.exec_driver_sql("SELECT count(*) FROM card").scalar_one()
        links = conn.exec_driver_sql("SELECT count(*) FROM mpi_link").scalar_one()
        keys = conn.exec_driver_sql("SELECT count(*) FROM mpi_block").scalar_one()
        people = conn.exec_driver_sql(
            "SELECT count(DISTINCT enterprise_id) FROM mpi_link"
        ).scalar_one()
    engine.dispose()
    return (
        f"{cards:,} cards; index: {links:,} source records, {people:,} enterprise patients, "
        f"{keys:,} blocking keys"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=400, help="per tree and round (<= 2000)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--baseline", help="a checkout of main, measured in the same run")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--hospital", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        bodies = json.loads(Path(args.measure).read_text())
        print(json.dumps(measure(bodies, args.hospital)))
        return
    print(f"machine: {machine()}")
    # After a bulk load, as autovacuum would (stale statistics plan blocking queries badly).
    engine = build_engine(DB_URL)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE mpi_block")
        conn.exec_driver_sql("ANALYZE mpi_link")
        conn.commit()
    engine.dispose()
    print(f"population: {population()}")
    trees = ["this tree"] + (["baseline"] if args.baseline else [])
    known = enrolled_people(args.probes // 2 * args.rounds * len(trees), args.seed)
    results: dict[str, dict[str, Any]] = {}
    tag = args.seed * 100
    for n in range(args.rounds):
        for label in trees if n % 2 == 0 else list(reversed(trees)):
            tag += 1
            half = args.probes // 2
            mine, known = known[:half], known[half:]
            bodies = probes(mine, tag)
            print(f"  round {n + 1}, {label}: load {os.getloadavg()[0]:.1f}", flush=True)
            if label == "this tree":
                out = measure(bodies, f"h{tag}")
            else:
                path = Path(f"/tmp/identity-match-probes-{os.getpid()}.json")
                path.write_text(json.dumps(bodies))
                try:
                    out = baseline(args.baseline, str(path), f"h{tag}")
                finally:
                    path.unlink()
            into = results.setdefault(label, {"outcomes": Counter()})
            into["outcomes"].update(out.pop("outcomes"))
            for phase, values in out.items():
                into.setdefault(phase, []).extend(values)
    print(
        f"{args.probes} new records x {args.rounds} rounds per tree, load now "
        f"{os.getloadavg()[0]:.1f}"
    )
    for label, timings in results.items():
        print(f"  {label:<9} outcomes {dict(timings.pop('outcomes'))}")
        for phase, values in timings.items():
            print(f"  {label:<9} {phase:<17} {summary(values)}")


if __name__ == "__main__":
    main()
