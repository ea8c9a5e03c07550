"""Index extraction speed on the Synthea bundles: rows per resource and microseconds per resource.

    .venv/bin/python bench/search_extract.py [DIR_OR_FILES...] [--repeat N] [--fhirpathpy]

Defaults to ../shared/testdata/fhir/synthea-bundles (or tests/fixtures/search). With
``--fhirpathpy`` it also times evaluating the same parameters with fhirpathpy, the
general FHIRPath engine, for comparison (slow: keep the input small).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from hie.search.definitions import default_registry
from hie.search.extract import Extractor

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIRS = (
    ROOT.parent.parent / "shared" / "testdata" / "fhir" / "synthea-bundles",
    Path("/work/shared/testdata/fhir/synthea-bundles"),
    ROOT / "tests" / "fixtures" / "search",
)


def load_resources(paths: list[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in paths:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for f in files:
            data = json.loads(f.read_text("utf-8"))
            if data.get("resourceType") == "Bundle":
                out.extend(e["resource"] for e in data.get("entry", ()) if "resource" in e)
            elif "resourceType" in data:
                out.append(data)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("paths", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fhirpathpy", action="store_true")
    args = ap.parse_args()
    paths = args.paths or [next(d for d in DEFAULT_DIRS if d.exists())]
    resources = load_resources(paths)
    t0 = time.perf_counter()
    registry = default_registry()
    extractor = Extractor(registry)
    print(f"definitions + compile: {(time.perf_counter() - t0) * 1000:.0f} ms")

    rows = sum(len(extractor.extract(r)) for r in resources)  # warm up, count
    best = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        for r in resources:
            extractor.extract(r)
        best = min(best, time.perf_counter() - t)
    n = len(resources)
    print(f"resources: {n}, rows: {rows} ({rows / n:.1f} per resource)")
    print(f"extraction: {best / n * 1e6:.1f} us per resource ({n / best:,.0f} resources/s)")

    per_type: dict[str, list[float]] = collections.defaultdict(list)
    for r in resources:
        t = time.perf_counter()
        got = extractor.extract(r)
        per_type[r["resourceType"]].append(time.perf_counter() - t)
        per_type[r["resourceType"] + "#rows"].append(len(got))
    print(f"{'type':22} {'count':>6} {'rows/res':>9} {'us/res':>8}")
    for rtype in sorted(k for k in per_type if "#" not in k):
        times, counts = per_type[rtype], per_type[rtype + "#rows"]
        print(
            f"{rtype:22} {len(times):6d} {sum(counts) / len(counts):9.1f}"
            f" {sum(times) / len(times) * 1e6:8.1f}"
        )

    if args.fhirpathpy:
        compare_fhirpathpy(registry, resources)
    return 0


def compare_fhirpathpy(registry: Any, resources: list[dict[str, Any]]) -> None:
    import fhirpathpy
    from fhirpathpy.models import models

    compiled: dict[str, list[Any]] = {}
    for r in resources:
        rtype = r["resourceType"]
        if rtype not in compiled:
            compiled[rtype] = [
                fhirpathpy.compile(p.expression, model=models["r4"])
                for p in registry.params(rtype).values()
                if p.expression and p.column is None and p.type.value != "composite"
            ]
    sample = resources[: min(len(resources), 300)]
    t = time.perf_counter()
    for r in sample:
        for fn in compiled[r["resourceType"]]:
            with contextlib.suppress(Exception):  # resolve() and friends fail there
                fn(r)
    spent = time.perf_counter() - t
    print(f"fhirpathpy, same expressions (no row building): {spent / len(sample) * 1e6:.0f} us")


if __name__ == "__main__":
    sys.exit(main())
