"""Time Validator.validate against plain R4B model_validate over Synthea bundles.

    .venv/bin/python tools/bench_validation.py [BUNDLE_DIR] [--rounds N]

Validates every entry resource (not the Bundle) the way a transaction does, and
prints resources/s for each, interleaving rounds so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from hie.fhir import r4b
from hie.fhir.validation import load_validator

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "tests/fixtures/fhir/synthea-bundles"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle_dir", type=Path, nargs="?", default=DEFAULT_DIR)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    resources = []
    for path in sorted(args.bundle_dir.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources.extend(e["resource"] for e in bundle.get("entry", ()) if "resource" in e)
    validator = load_validator()
    models = {r["resourceType"]: r4b.model_for(r["resourceType"]) for r in resources}

    def plain() -> None:
        for resource in resources:
            model = models[resource["resourceType"]]
            assert model is not None
            with contextlib.suppress(Exception):  # the known bad entry
                model.model_validate(resource)

    def full() -> None:
        for resource in resources:
            validator.validate(resource)

    def walker_only() -> None:
        for resource in resources:
            validator._structure.check(resource, [], [])

    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, fn in (("model_validate", plain), ("validate", full), ("walker", walker_only)):
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            best[name] = min(best.get(name, elapsed), elapsed)
    n = len(resources)
    for name, seconds in best.items():
        sys.stdout.write(f"{name:15} {n / seconds:8.0f} resources/s  ({seconds:.3f} s, {n})\n")
    overhead = best["validate"] / best["model_validate"] - 1
    sys.stdout.write(f"validate() adds {overhead:.1%} to model_validate\n")


if __name__ == "__main__":
    main()
