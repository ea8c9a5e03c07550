"""`hie card import` throughput: cards/s into a fresh database, then a repeated run.

    python bench/card_import.py --db postgresql --cards 200000

Generates the CSV (bench/card_data.py), migrates a fresh database (PostgreSQL database
``hie_bench_card``, or SQLite in a temporary directory) and runs the importer that
`hie card import` runs, in-process, timing only the import. The second run shows the
idempotent path (every row already present).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import fresh_database, machine, workdir  # noqa: E402
from bench.card_data import write_csv  # noqa: E402
from card.importing import CardImporter, read_csv  # noqa: E402
from hie.app import build_services  # noqa: E402
from hie.settings import Settings  # noqa: E402
from hie.storage.sql.engine import build_engine  # noqa: E402
from hie.storage.sql.migrate import upgrade  # noqa: E402


def run(db_url: str, data_dir: Path, csv_path: Path, batch: int) -> tuple[float, int, int, int]:
    settings = Settings().replace(
        database__url=db_url, data__dir=str(data_dir), database__sqlite_synchronous="NORMAL"
    )
    services = build_services(settings)
    try:
        importer = CardImporter(services.card)
        started = time.perf_counter()
        with csv_path.open(encoding="utf-8", newline="") as handle:
            report = importer.load(read_csv(handle), batch=batch)
        elapsed = time.perf_counter() - started
    finally:
        services.close()
    return elapsed, report.imported, report.skipped, report.rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--cards", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with workdir() as tmp:
        csv_path = tmp / "cards.csv"
        write_csv(csv_path, args.cards)
        db_url = fresh_database(args.db, tmp, name="hie_bench_card")
        engine = build_engine(db_url)
        upgrade(engine)
        engine.dispose()
        for label in ("first run", "repeated run"):
            elapsed, imported, skipped, rejected = run(db_url, tmp / "var", csv_path, args.batch)
            print(
                f"{args.db} {label}: {args.cards} rows in {elapsed:.1f} s = "
                f"{args.cards / elapsed:,.0f} cards/s "
                f"(imported {imported}, already present {skipped}, rejected {rejected})"
            )


if __name__ == "__main__":
    main()
