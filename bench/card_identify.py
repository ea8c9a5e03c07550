"""`POST /card/v1/identify` latency by card number, on a large card population.

    python bench/card_identify.py --cards 1000000            # fresh population, then measure
    python bench/card_identify.py --cards 1000000 --reuse    # measure the existing one

Loads ``--cards`` cards into the PostgreSQL database ``hie_bench_card`` with the importer
of `hie card import` (bench/card_data.py), then identifies ``--samples`` random active
cards through the whole application (Flask, bearer token, card tables, exchange, audit
group commit) in-process, one request at a time. Each sampled card is identified twice:
the first identify of an imported card writes its card-source Patient through the
exchange (a one-off cost), the second is the steady state the target is about. A third
pass times the card service's own share (the card row and the masked holder) without
HTTP and without the audit wait, and a fourth the audit seam alone (one
``Exchange.record``), to show where the time goes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import PG_ADMIN, fresh_database, machine  # noqa: E402
from bench.card_data import person, write_csv  # noqa: E402
from card.importing import CardImporter, read_csv  # noqa: E402
from hie.app import build_services, create_app  # noqa: E402
from hie.settings import Settings  # noqa: E402
from hie.storage.sql.engine import build_engine  # noqa: E402
from hie.storage.sql.migrate import upgrade  # noqa: E402

DATA_DIR = Path(tempfile.gettempdir()) / "hie-bench-card-var"
CHUNK = 500_000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def populate(db_url: str, cards: int) -> None:
    engine = build_engine(db_url)
    upgrade(engine)
    engine.dispose()
    services = build_services(Settings().replace(database__url=db_url, data__dir=str(DATA_DIR)))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.reuse:
        db_url = PG_ADMIN.rsplit("/", 1)[0] + "/hie_bench_card"
    else:
        db_url = fresh_database("postgresql", DATA_DIR, name="hie_bench_card")
        populate(db_url, args.cards)
    services = build_services(Settings().replace(database__url=db_url, data__dir=str(DATA_DIR)))
    try:
        client = create_app(services=services).test_client()
        token = services.issuer.issue(
            subject="reader", scope="card.identify", ttl=3600, organization="Organization/bench"
        )
        headers = {"Authorization": f"Bearer {token}"}
        rng = random.Random(7)
        picks: list[str] = []
        while len(picks) < args.samples:
            candidate = person(rng.randrange(args.cards))
            if candidate["status"] == "active":
                picks.append(candidate["card_no"])
        timings: dict[str, list[float]] = {"first": [], "steady": []}
        for phase in ("first", "steady"):
            for card_no in picks:
                started = time.perf_counter()
                res = client.post("/card/v1/identify", json={"card_no": card_no}, headers=headers)
                timings[phase].append((time.perf_counter() - started) * 1000)
                if res.status_code != 200:
                    raise SystemExit(f"identify {card_no}: {res.status_code} {res.get_data()!r}")
        # the card service's own share: the card row (one indexed read) and the masked holder
        card = services.card
        lookups = []
        for card_no in picks:
            started = time.perf_counter()
            with card.registry.transaction(write=False) as tx:
                row = tx.card(card_no)
            assert row is not None
            card.card_view(row, row.person.patient)
            card.holder_view(row.person)
            lookups.append((time.perf_counter() - started) * 1000)
        timings["card lookup only"] = lookups
        # the audit seam alone: one Exchange.record, waiting for its group commit
        ctx = services.verifier.verify(token).context()
        audits = []
        for _ in picks:
            started = time.perf_counter()
            services.exchange.record(ctx, "bench")
            audits.append((time.perf_counter() - started) * 1000)
        timings["audit record only"] = audits
        print(f"population: {args.cards:,} cards in PostgreSQL; {args.samples} samples")
        for phase, values in timings.items():
            print(
                f"identify ({phase}): p50 {statistics.median(values):.2f} ms, "
                f"p95 {percentile(values, 95):.2f} ms, p99 {percentile(values, 99):.2f} ms, "
                f"max {max(values):.2f} ms"
            )
    finally:
        services.close()


if __name__ == "__main__":
    main()
