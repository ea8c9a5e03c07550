"""The master patient index in the write path: accuracy and latency through hie.exchange.

``accuracy``: a synthetic population (bench/identity_population.py) arrives as FHIR
Patients through ``Exchange.create`` (card records with ``source=card``); the enterprise
each record ends up linked to is scored pairwise against the truth (precision, recall,
F1), and links between different valid resident ID numbers are counted.

``scale``: a population of N records is loaded straight into the index tables (sealed,
blocking keys, as the write path would store them), then new source records (half of them
hospital records of people already there, without a resident ID number, so matching is
probabilistic; half new people) are written through ``Exchange.create``; the latency of
each whole write (matching, linking, enterprise Patient rewrite, commit) and of the
matching step alone is reported.

    python bench/identity_write_path.py accuracy --people 2000 --db postgresql
    python bench/identity_write_path.py scale --population 1000000 --probes 400

PostgreSQL: $HIE_TEST_PG_URL (its tables are dropped and migrated again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine
from identity_accuracy import pairwise
from identity_population import generate

from card.resident_id import is_valid
from hie.app import Services, build_services
from hie.context import RequestContext, Scopes
from hie.fhir.identifiers import CARD_SYSTEM, IDENTITY_TAG_SYSTEM, RESIDENT_ID_SYSTEM
from hie.identity import PersonRecord
from hie.settings import Settings
from hie.storage.sql.migrate import upgrade

TODAY = dt.date(2026, 11, 28)


def to_patient(record: PersonRecord) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient"}
    idents = [{"system": i.system, "value": i.value} for i in record.identifiers]
    if record.resident_id:
        idents.append({"system": RESIDENT_ID_SYSTEM, "value": record.resident_id})
    if record.card_no:
        idents.append({"system": CARD_SYSTEM, "value": record.card_no})
    if idents:
        body["identifier"] = idents
    names = []
    for n in record.names:
        name: dict[str, Any] = {}
        if n.family:
            name["family"] = n.family
        if n.given:
            name["given"] = [n.given]
        names.append(name)
    if names:
        body["name"] = names
    if record.gender:
        body["gender"] = record.gender
    if record.birth_date:
        body["birthDate"] = record.birth_date.isoformat()
    if record.phone:
        body["telecom"] = [{"system": "phone", "value": record.phone}]
    if record.address or record.locality:
        address: dict[str, Any] = {}
        if record.address:
            address["line"] = [record.address]
        if record.locality:
            address["district"] = record.locality
        body["address"] = [address]
    if record.source == "card":
        body["meta"] = {"tag": [{"system": IDENTITY_TAG_SYSTEM, "code": "card"}]}
    return body


def ctx_for(record: PersonRecord) -> RequestContext:
    org = None if record.source == "card" else f"Organization/{record.source}"
    return RequestContext(
        actor="bench",
        organization=org,
        scopes=Scopes("system/*.cruds"),
        source="card" if record.source == "card" else None,
    )


def fresh(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{workdir}/hie.db"
    else:
        url = os.environ["HIE_TEST_PG_URL"]
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    from hie.storage.sql.engine import build_engine

    engine = build_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def services_for(url: str, workdir: Path) -> Services:
    settings = Settings().replace(database__url=url, data__dir=str(workdir / "var"))
    return build_services(settings)


def accuracy(args: argparse.Namespace) -> None:
    _, arrivals = generate(args.people, seed=args.seed, today=TODAY)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        services = services_for(fresh(args.db, workdir), workdir)
        ex = services.exchange
        truth: dict[str, str] = {}
        ids: dict[str, str] = {}
        t0 = time.perf_counter()
        for person, record in arrivals:
            written = ex.create(ctx_for(record), "Patient", to_patient(record))
            ids[written.stored.id] = person
            truth[written.stored.id] = person
        elapsed = time.perf_counter() - t0
        ops = ex.identity
        assert ops is not None
        cluster: dict[str, str] = {}
        statuses: Counter[str] = Counter()
        cross = 0
        with services.store.unit_of_work(write=False) as uow:
            by_enterprise: dict[str, list[PersonRecord]] = {}
            for source_id in ids:
                link = uow.identity.get(source_id)
                assert link is not None
                cluster[source_id] = link.enterprise_id
                statuses[link.status] += 1
                if link.status == "auto":
                    by_enterprise.setdefault(link.enterprise_id, []).append(
                        ops.mpi.open_record(link)
                    )
            for members in by_enterprise.values():
                rids = {
                    m.resident_id
                    for m in members
                    if m.resident_id and is_valid(m.resident_id, today=TODAY)
                }
                cross += len(rids) > 1
        services.close()
    scores = pairwise(truth, cluster)
    print(f"# identity write path, {args.db}, {machine()}")
    print(
        f"  {len(arrivals)} records of {args.people} people in {elapsed:.1f} s "
        f"({len(arrivals) / elapsed:.0f} Patients/s through Exchange.create)"
    )
    print(scores.line("enterprise links (auto+provisional)"))
    print(f"  link statuses: {dict(statuses)}")
    print(f"  enterprise Patients auto-linking two different valid resident IDs: {cross}")


def scale(args: argparse.Namespace) -> None:
    people = max(args.population * 10 // 22, 10)
    print(f"# identity scale, postgresql, {machine()}")
    t0 = time.perf_counter()
    _, arrivals = generate(people, seed=args.seed, today=TODAY)
    print(
        f"  generated {len(arrivals)} records of {people} people in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = fresh("postgresql", workdir)
        services = services_for(url, workdir)
        ops = services.exchange.identity
        assert ops is not None
        mpi = ops.mpi
        # hold out records of people who are there: they arrive later, without an ID number
        held: list[PersonRecord] = []
        seen: set[str] = set()
        load: list[tuple[str, PersonRecord]] = []
        for person, record in arrivals:
            if person in seen and len(held) < args.probes // 2 and record.source != "card":
                held.append(
                    record.__class__(
                        **{
                            **{f: getattr(record, f) for f in record.__dataclass_fields__},
                            "resident_id": None,
                        }
                    )
                )
                continue
            seen.add(person)
            load.append((person, record))
        t0 = time.perf_counter()
        raw = services.engine.raw_connection()
        raw_blocks = services.engine.raw_connection()
        n_blocks = 0
        try:
            cur, cur_blocks = raw.cursor(), raw_blocks.cursor()
            with (
                cur.copy(
                    "COPY mpi_link (source_id, enterprise_id, source, status, score, reason,"
                    " rid_index, card_no, merged_from, updated_us, sealed) FROM STDIN"
                ) as copy_link,
                cur_blocks.copy("COPY mpi_block (key, source_id) FROM STDIN") as copy_block,
            ):
                for n, (person, record) in enumerate(load):
                    link = mpi.link_for(
                        record, enterprise_id=f"e-{person}", status="auto", score=0.0, reason="load"
                    )
                    copy_link.write_row(
                        (
                            record.record_id,
                            link.enterprise_id,
                            link.source,
                            "auto",
                            0.0,
                            "load",
                            link.rid_index,
                            link.card_no,
                            None,
                            0,
                            link.sealed,
                        )
                    )
                    for key in set(link.keys):
                        copy_block.write_row((key, record.record_id))
                        n_blocks += 1
                    if n and n % 100_000 == 0:
                        print(
                            f"  sealed {n} records ({time.perf_counter() - t0:.0f} s)", flush=True
                        )
            raw.commit()
            raw_blocks.commit()
            cur.execute("ANALYZE mpi_link")
            cur.execute("ANALYZE mpi_block")
            raw.commit()
        finally:
            raw.close()
            raw_blocks.close()
        blocks = range(n_blocks)
        print(
            f"  loaded {len(load)} records, {len(blocks)} blocking keys in "
            f"{time.perf_counter() - t0:.0f} s"
        )
        _, newcomers = generate(args.probes - len(held), seed=args.seed + 1000, today=TODAY)
        probes = held + [
            r.__class__(
                **{
                    **{f: getattr(r, f) for f in r.__dataclass_fields__},
                    "record_id": "new:" + r.record_id,
                }
            )
            for _, r in newcomers[: args.probes - len(held)]
        ]
        match_ms: list[float] = []
        write_ms: list[float] = []
        outcomes: Counter[str] = Counter()
        for record in probes:
            t1 = time.perf_counter()
            with services.store.unit_of_work(write=False) as uow:
                results = mpi.match(uow, to_patient(record))
            match_ms.append((time.perf_counter() - t1) * 1000)
            outcomes[results[0].outcome.value if results else "NO_MATCH"] += 1
            t1 = time.perf_counter()
            services.exchange.create(ctx_for(record), "Patient", to_patient(record))
            write_ms.append((time.perf_counter() - t1) * 1000)
        services.close()

    def q(values: list[float], p: float) -> float:
        return statistics.quantiles(values, n=100)[int(p) - 1]

    print(
        f"  {len(probes)} new source records ({len(held)} of known people without ID "
        f"number, {len(probes) - len(held)} new people); top outcomes {dict(outcomes)}"
    )
    for label, values in (("matching step (read)", match_ms), ("whole write", write_ms)):
        print(
            f"  {label:<22} p50 {q(values, 50):6.1f} ms  p95 {q(values, 95):6.1f} ms  "
            f"p99 {q(values, 99):6.1f} ms  max {max(values):6.1f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    acc = sub.add_parser("accuracy")
    acc.add_argument("--people", type=int, default=1000)
    acc.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    acc.add_argument("--seed", type=int, default=11)
    sc = sub.add_parser("scale")
    sc.add_argument("--population", type=int, default=100_000)
    sc.add_argument("--probes", type=int, default=300)
    sc.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    (accuracy if args.command == "accuracy" else scale)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
