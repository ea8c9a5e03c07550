"""`hie audit verify` speed: walk a chain of realistic AuditEvents and check checkpoints.

Fills a fresh audit trail with N records as the exchange builds them (a read of a
resource, with client, organisation, purpose, patient and entity; about 1.2 KB each),
appended in group-commit batches, then times the verification the CLI runs.

    .venv/bin/python bench/audit_verify.py --db sqlite --db postgresql --records 200000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from _harness import ROOT, fresh_database, machine, workdir

sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hie.audit.chain import CheckpointSigner, verify
from hie.audit.event import Access, AuditBuilder
from hie.context import RequestContext, Scopes
from hie.storage.sql.audit import SqlAuditLog
from hie.storage.sql.engine import build_engine
from hie.storage.sql.migrate import upgrade


def fill(log: SqlAuditLog, records: int, batch: int) -> float:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    tick = iter(range(10**9))
    builder = AuditBuilder(clock=lambda: start + timedelta(milliseconds=next(tick)))
    ctx = RequestContext(
        actor="his-mianyang-central",
        organization="Organization/mianyang-central",
        purpose="TREAT",
        scopes=Scopes("system/*.rs"),
        source="10.20.30.40",
        token_id="6f1d2c3b4a5968778695a4b3c2d1e0f9",
    )
    began = time.perf_counter()
    for first in range(0, records, batch):
        out = []
        for n in range(first, min(first + batch, records)):
            access = Access(
                subtype="read",
                patients=(f"Patient/p{n % 5000}",),
                entities=(f"Observation/o{n}",),
            )
            out.append(builder.build(ctx, access))
        log.append(out)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"# machine: {machine()}")
    key = Ed25519PrivateKey.generate()
    for kind in args.db or ["sqlite"]:
        with workdir() as tmp:
            url = fresh_database(kind, tmp, name="hie_bench_audit")
            engine = build_engine(url)
            upgrade(engine)
            log = SqlAuditLog(engine, sign=CheckpointSigner(key), checkpoint_every=10_000)
            took = fill(log, args.records, args.batch)
            print(
                f"{kind}: appended {args.records} records in {took:.1f} s "
                f"({args.records / took:,.0f}/s, batches of {args.batch})"
            )
            for _ in range(args.runs):
                began, cpu = time.perf_counter(), time.process_time()
                verdict = verify(log.links(), log.checkpoints(), key.public_key())
                elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
                assert verdict.ok, verdict.problem
                print(
                    f"{kind}: verified {verdict.records} records and {verdict.checkpoints} "
                    f"checkpoints in {elapsed:.2f} s = {verdict.records / elapsed:,.0f} records/s "
                    f"(CPU {cpu:.2f} s = {verdict.records / cpu:,.0f} records/s of CPU; "
                    f"load {os.getloadavg()[0]:.1f})"
                )
            log.close()


if __name__ == "__main__":
    main()
