"""Cost of the consent decision point, in process (no HTTP), on SQLite or PostgreSQL.

Loads PATIENTS patients of hospital A with OBS Observations each; half of them carry a
Consent (one of SHAPES provision trees) that lets hospital B see their records. Then
times, with consent on and with permit-all in the same run:
- reads by the custodian (decided from the caller and the custodian alone);
- reads by hospital B (the patient's Consents are read for each decision);
- searches by hospital B (the visibility filter inside the SQL): one patient's
  Observations, and one code across all patients (20 a page).

    .venv/bin/python bench/consent_decision.py [sqlite|postgresql] [PATIENTS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import fresh_database
from hie.app import build_services
from hie.context import RequestContext, Scopes
from hie.settings import Settings
from hie.storage.sql.migrate import upgrade

A, B = "Organization/a", "Organization/b"
OBS = 5
SHAPES = 20
SCOPES = Scopes("system/*.cruds consent.record")


def consent(i: int, p: str) -> dict[str, Any]:
    classes = [{"code": "Observation"}, {"code": "Patient"}]
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{p}"},
        "policyRule": {"coding": [{"code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "actor": [{"role": {"text": "recipient"}, "reference": {"reference": B}}],
            "class": classes,
            "period": {"start": f"{2000 + i % SHAPES}-01-01"},
        },
    }


def load(settings: Settings, patients: int) -> None:
    services = build_services(settings)
    upgrade(services.engine)
    a = RequestContext(actor="his-a", organization=A, scopes=SCOPES)
    entries: list[dict[str, Any]] = []
    for n in range(patients):
        p = f"p{n}"
        entries.append({"resourceType": "Patient", "id": p})
        for k in range(OBS):
            entries.append(
                {
                    "resourceType": "Observation",
                    "id": f"{p}-{k}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/{p}"},
                }
            )
        if n % 2 == 0:
            entries.append({**consent(n, p), "id": f"c{n}"})
    for start in range(0, len(entries), 500):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in entries[start : start + 500]
            ],
        }
        services.exchange.transaction(a, bundle)
    services.close()


def rate(call: Callable[[int], object], n: int) -> float:
    call(0)
    began = time.perf_counter()
    for i in range(n):
        call(i)
    return n / (time.perf_counter() - began)


def measure(settings: Settings, patients: int) -> dict[str, float]:
    services = build_services(settings)
    x = services.exchange
    a = RequestContext(actor="his-a", organization=A, scopes=SCOPES)
    b = RequestContext(actor="his-b", organization=B, scopes=SCOPES, purpose="TREAT")
    out = {
        "read, custodian": rate(lambda i: x.read(a, "Observation", f"p{i % patients}-1"), 2000),
        "read, other org": rate(
            lambda i: x.read(b, "Observation", f"p{2 * (i % (patients // 2))}-1"), 1000
        ),
        "search, one patient": rate(
            lambda i: x.search(
                b, "Observation", [("subject", f"Patient/p{2 * (i % (patients // 2))}")]
            ),
            500,
        ),
        "search, other org": rate(
            lambda i: x.search(b, "Observation", [("code", "8867-4"), ("_count", "20")]), 200
        ),
    }
    services.close()
    return out


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    patients = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_database(kind, Path(tmp), name="hie_bench_consent")
        # fsync off: audit commits would otherwise dominate and hide the decision's cost.
        base = Settings().replace(
            database__url=url,
            database__sqlite_synchronous="OFF",
            data__dir=str(Path(tmp) / "var"),
        )
        load(base, patients)
        permit_all = base.replace(consent={"enabled": False, "policy": ""})
        # Alternated, best of two each: the machine is shared and its load moves.
        runs = [measure(s, patients) for s in (base, permit_all, base, permit_all)]
        on = {k: max(runs[0][k], runs[2][k]) for k in runs[0]}
        off = {k: max(runs[1][k], runs[3][k]) for k in runs[1]}
    print(f"{kind}, {patients} patients x {OBS} Observations, {patients // 2} Consents")
    print(f"{'operation':<22} {'consent /s':>12} {'permit-all /s':>14} {'cost':>7}")
    for name in on:
        cost = 1 - on[name] / off[name]
        print(f"{name:<22} {on[name]:>12.0f} {off[name]:>14.0f} {cost:>7.0%}")


if __name__ == "__main__":
    main()
