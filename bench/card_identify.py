"""`POST /card/v1/identify` latency by card number, on a large card population.

    python bench/card_identify.py --cards 1000000 --enrol 1000000   # fresh population
    python bench/card_identify.py --reuse                           # measure the existing one
    python bench/card_identify.py --reuse --baseline /tmp/main-tree # A/B, same run

Loads ``--cards`` cards into the PostgreSQL database ``hie_bench_card`` with the importer
of `hie card import` (bench/card_data.py), then enrols up to ``--enrol`` holders in the
master patient index through the product's bulk path (``CardService.enroll``, what
`hie card enroll` runs): a card-source and an enterprise Patient each. Then identifies
``--samples`` random active cards of enrolled holders through the whole application
(Flask test client, bearer token, card tables, exchange, audit) in-process, one request
at a time, and times the parts on their own: the token check, the card row with its
masked holder, the enterprise lookup and the audit record.

With ``--baseline TREE`` the same samples are measured by TREE's code (a checkout of
main) in a child process, alternating with this tree's rounds, so both see the same
machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("HIE_BENCH_TREE") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

from bench._harness import PG_ADMIN, fresh_database, machine  # noqa: E402
from bench.card_data import write_csv  # noqa: E402
from card.importing import CardImporter, read_csv  # noqa: E402
from hie.app import build_services, create_app  # noqa: E402
from hie.settings import Settings  # noqa: E402
from hie.storage.sql.engine import build_engine  # noqa: E402
from hie.storage.sql.migrate import upgrade  # noqa: E402

DATA_DIR = Path(tempfile.gettempdir()) / "hie-bench-card-var"
CHUNK = 500_000
DB_URL = PG_ADMIN.rsplit("/", 1)[0] + "/hie_bench_card"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):.2f} ms, p95 {percentile(values, 95):.2f} ms, "
        f"p99 {percentile(values, 99):.2f} ms, max {max(values):.2f} ms"
    )


def populate(cards: int) -> None:
    engine = build_engine(DB_URL)
    upgrade(engine)
    engine.dispose()
    services = build_services(Settings().replace(database__url=DB_URL, data__dir=str(DATA_DIR)))
    try:
        importer = CardImporter(services.card)
        spent = 0.0  # importing only, not writing the CSV
        with tempfile.TemporaryDirectory() as tmp:
            for start in range(0, cards, CHUNK):
                path = Path(tmp) / "cards.csv"
                write_csv(path, min(CHUNK, cards - start), start)
                started = time.perf_counter()
                with path.open(encoding="utf-8", newline="") as handle:
                    importer.load(read_csv(handle), batch=5000)
                spent += time.perf_counter() - started
                done = min(start + CHUNK, cards)
                print(f"  loaded {done:,} cards ({done / spent:,.0f}/s)", flush=True)
    finally:
        services.close()


def enrol(limit: int, batch: int = 2000) -> None:
    """Enrol holders through the product's bulk path until ``limit`` are enrolled."""
    services = build_services(Settings().replace(database__url=DB_URL, data__dir=str(DATA_DIR)))
    card = services.card
    try:
        done, after, started = 0, 0, time.perf_counter()
        while done < limit:
            with card.registry.transaction(write=False) as tx:
                ids = tx.unenrolled(after, min(batch, limit - done))
            if not ids:
                break
            done += card.enroll(ids, actor="bench-enrol")
            after = ids[-1]
            if done % 20_000 < batch:
                rate = done / (time.perf_counter() - started)
                print(f"  enrolled {done:,} holders ({rate:,.0f}/s)", flush=True)
    finally:
        services.close()


def population() -> dict[str, int]:
    engine = build_engine(DB_URL)
    with engine.connect() as conn:
        counts = {
            name: int(conn.exec_driver_sql(sql).scalar_one())
            for name, sql in (
                ("cards", "SELECT count(*) FROM card"),
                ("card holders", "SELECT count(*) FROM card_person"),
                ("enrolled holders", "SELECT count(*) FROM card_person WHERE patient IS NOT NULL"),
                ("index links", "SELECT count(*) FROM mpi_link"),
                (
                    "enterprise patients",
                    "SELECT count(DISTINCT enterprise_id) FROM mpi_link",
                ),
            )
        }
    engine.dispose()
    return counts


def pick(samples: int, seed: int) -> list[str]:
    """Random active cards of enrolled holders (the steady state readers see)."""
    engine = build_engine(DB_URL)
    with engine.connect() as conn:
        top = int(conn.exec_driver_sql("SELECT max(id) FROM card_person").scalar_one())
        rng = random.Random(seed)
        picks: list[str] = []
        while len(picks) < samples:
            ids = sorted({rng.randrange(1, top + 1) for _ in range(samples * 4)})
            rows = conn.exec_driver_sql(
                "SELECT c.card_no FROM card c JOIN card_person p ON p.id = c.person_id "
                "WHERE p.id = ANY(%(ids)s) AND c.status = 'active' AND p.patient IS NOT NULL",
                {"ids": ids},
            ).all()
            picks.extend(r[0] for r in rows)
        rng.shuffle(picks)
    engine.dispose()
    return picks[:samples]


def measure(picks: list[str]) -> dict[str, list[float]]:
    """Identify each card through the app, then time the parts alone."""
    services = build_services(Settings().replace(database__url=DB_URL, data__dir=str(DATA_DIR)))
    try:
        client = create_app(services=services).test_client()
        token = services.issuer.issue(
            subject="reader", scope="card.identify", ttl=3600, organization="Organization/bench"
        )
        headers = {"Authorization": f"Bearer {token}"}
        # wall time, and this thread's CPU time (the app's own work, whatever the load)
        timings: dict[str, list[float]] = {"identify": [], "identify, CPU of this thread": []}
        for card_no in picks[:50]:  # warm the pool, caches and code paths
            client.post("/card/v1/identify", json={"card_no": card_no}, headers=headers)
        for card_no in picks:
            started, cpu = time.perf_counter(), time.thread_time()
            res = client.post("/card/v1/identify", json={"card_no": card_no}, headers=headers)
            timings["identify"].append((time.perf_counter() - started) * 1000)
            timings["identify, CPU of this thread"].append((time.thread_time() - cpu) * 1000)
            if res.status_code != 200:
                raise SystemExit(f"identify {card_no}: {res.status_code} {res.get_data()!r}")
        ctx = services.verifier.verify(token).context()
        parts: dict[str, list[float]] = {
            "token check": [],
            "card row + masked holder": [],
            "enterprise lookup": [],
            "audit record": [],
        }
        card = services.card
        sources = []
        for card_no in picks:
            started = time.perf_counter()
            services.verifier.verify(token)
            parts["token check"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            with card.registry.transaction(write=False) as tx:
                row = tx.card(card_no)
            assert row is not None
            assert row.person.patient is not None
            card.card_view(row)
            card.holder_view(row.person)
            parts["card row + masked holder"].append((time.perf_counter() - started) * 1000)
            sources.append(row.person.patient)
        for source in sources:
            started = time.perf_counter()
            services.exchange.enterprise_of(ctx, source)
            parts["enterprise lookup"].append((time.perf_counter() - started) * 1000)
        for _ in picks:
            started = time.perf_counter()
            services.exchange.record(ctx, "bench")
            parts["audit record"].append((time.perf_counter() - started) * 1000)
        timings.update(parts)
        return timings
    finally:
        services.close()


def baseline(tree: str, picks_file: str) -> dict[str, list[float]]:
    env = {**os.environ, "HIE_BENCH_TREE": tree, "PYTHONPATH": tree}
    done = subprocess.run(
        [sys.executable, __file__, "--measure", picks_file],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=200_000)
    parser.add_argument("--enrol", type=int, default=None, help="holders to enrol (all)")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--baseline", help="a checkout of main, measured in the same run")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a baseline child's picks
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(Path(args.measure).read_text()))))
        return
    print(f"machine: {machine()}")
    if not args.reuse:
        fresh_database("postgresql", DATA_DIR, name="hie_bench_card")
        populate(args.cards)
        enrol(args.enrol if args.enrol is not None else args.cards)
    print("population: " + ", ".join(f"{k} {v:,}" for k, v in population().items()))
    picks = pick(args.samples, seed=7)
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        picks_file = Path(tmp) / "picks.json"
        picks_file.write_text(json.dumps(picks))
        for n in range(args.rounds):
            rounds = [("this tree", lambda: measure(picks))]
            if args.baseline:
                rounds.append(("baseline", lambda: baseline(args.baseline, str(picks_file))))
            for label, run in rounds if n % 2 == 0 else reversed(rounds):
                print(f"  round {n + 1}, {label}: load {os.getloadavg()[0]:.1f}", flush=True)
                for phase, values in run().items():
                    results.setdefault(label, {}).setdefault(phase, []).extend(values)
    print(f"{args.samples} samples x {args.rounds} rounds, load now {os.getloadavg()[0]:.1f}")
    for label, timings in results.items():
        for phase, values in timings.items():
            print(f"  {label:<9} {phase:<29} {summary(values)}")


if __name__ == "__main__":
    main()
