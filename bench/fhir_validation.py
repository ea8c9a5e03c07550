"""Time Validator.validate against plain R4B model_validate over Synthea bundles.

    .venv/bin/python tools/bench_validation.py [BUNDLE_DIR] [--rounds N]

Validates every entry resource (not the Bundle) the way a transaction does. The
contenders alternate bundle by bundle and CPU time (not wall time) is summed, so a
busy machine slows both alike; each figure is the best of N rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hie.fhir import r4b
from hie.fhir.validation import load_validator

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "tests/fixtures/fhir/synthea-bundles"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle_dir", type=Path, nargs="?", default=DEFAULT_DIR)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    groups: list[list[dict[str, Any]]] = []
    for path in sorted(args.bundle_dir.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        groups.append([e["resource"] for e in bundle.get("entry", ()) if "resource" in e])
    validator = load_validator()
    models = {r["resourceType"]: r4b.model_for(r["resourceType"]) for g in groups for r in g}

    def plain(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            model = models[resource["resourceType"]]
            assert model is not None
            with contextlib.suppress(Exception):  # the known bad entry
                model.model_validate(resource)

    def full(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            validator.validate(resource)

    def walker(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            validator._structure.check(resource, [], [])

    contenders: dict[str, Callable[[list[dict[str, Any]]], None]] = {
        "model_validate": plain,
        "validate": full,
        "walker only": walker,
    }
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        spent = dict.fromkeys(contenders, 0.0)
        for group in groups:
            for name, fn in contenders.items():
                start = time.process_time()
                fn(group)
                spent[name] += time.process_time() - start
        for name, seconds in spent.items():
            best[name] = min(best.get(name, seconds), seconds)
    n = sum(len(g) for g in groups)
    for name, seconds in best.items():
        sys.stdout.write(f"{name:15} {n / seconds:8.0f} resources/s  ({seconds:.3f} s CPU, {n})\n")
    overhead = best["validate"] / best["model_validate"] - 1
    sys.stdout.write(f"validate() costs {overhead:+.1%} over model_validate\n")
    sys.stdout.write(f"walker alone is {best['walker only'] / best['model_validate']:.1%} of it\n")


if __name__ == "__main__":
    main()
