"""Synthea templates and clones for the search benchmarks.

A template is one Synthea patient bundle with every entry given a fixed id and every
``urn:uuid`` reference turned into ``Type/id``. A clone is a template with new ids, new
identifier values (suffixed with the clone number) and every date shifted by a whole
number of days, so clones are different patients in different years.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "tests" / "fixtures" / "fhir" / "synthea-bundles"
SKIP = ("Bob965", "Cecelia952", "uscore_bundle_patient_355")  # fail to load by design
# The templates merged into one patient with about a thousand resources.
BIG = (
    "9aaf0e69-b188-424b-8da5-e673dae73f32.transaction.json",
    "7b4cf3d5-26bd-4c44-8f45-f11928c63c0e.transaction.json",
    "cc3bf71c-1e1a-47d6-89e1-87e369e3802d.transaction.json",
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_REFERENCE = re.compile(r'"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})"')
Resource = dict[str, Any]


def resolve(bundle: dict[str, Any]) -> list[Resource]:
    """A transaction bundle's resources with fixed ids and local references."""
    ids: dict[str, str] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        request = entry["request"]
        if request["method"] == "PUT":
            rid = urlsplit(request["url"]).path.split("/")[-1]
        else:
            rid = entry["fullUrl"].removeprefix("urn:uuid:")
        resource["id"] = rid
        ids[entry.get("fullUrl", "")] = f"{resource['resourceType']}/{rid}"
    text = orjson.dumps([e["resource"] for e in bundle["entry"]]).decode()
    for full, local in ids.items():
        if full.startswith("urn:uuid:"):
            text = text.replace(f'"{full}"', f'"{local}"')
    out: list[Resource] = orjson.loads(text)
    return out


def templates() -> dict[str, list[Resource]]:
    return {
        path.name: resolve(orjson.loads(path.read_bytes()))
        for path in sorted(BUNDLES.glob("*.json"))
        if not path.name.startswith(SKIP)
    }


def big_template(all_templates: dict[str, list[Resource]]) -> list[Resource]:
    """Three patients' records merged into one patient's (about 1,000 resources)."""
    first = all_templates[BIG[0]]
    patient = next(r for r in first if r["resourceType"] == "Patient")
    out = list(first)
    for name in BIG[1:]:
        other = all_templates[name]
        other_patient = next(r for r in other if r["resourceType"] == "Patient")
        text = orjson.dumps([r for r in other if r is not other_patient]).decode()
        text = text.replace(f'"Patient/{other_patient["id"]}"', f'"Patient/{patient["id"]}"')
        out += orjson.loads(text)
    return out


def _shift(text: str, days: int) -> str:
    m = _DATE.match(text)
    if m is None:
        return text
    try:
        moved = date(int(m.group(1)), int(m.group(2)), int(m.group(3))) + timedelta(days=days)
    except ValueError:
        return text
    return moved.isoformat() + text[10:]


def _dates(node: Any, days: int) -> Any:
    if isinstance(node, dict):
        return {k: _dates(v, days) for k, v in node.items()}
    if isinstance(node, list):
        return [_dates(v, days) for v in node]
    if isinstance(node, str) and len(node) >= 10 and node[4:5] == "-" and node[:4].isdigit():
        return _shift(node, days)
    return node


def clone(template: list[Resource], n: int, days: int) -> list[Resource]:
    """Clone ``n`` of a template: new ids, identifiers suffixed ``-c{n}``, dates moved."""
    ids = {f"{r['resourceType']}/{r['id']}": str(uuid.uuid4()) for r in template}

    def local(m: re.Match[str]) -> str:
        new = ids.get(f"{m.group(1)}/{m.group(2)}")
        return f'"{m.group(1)}/{new}"' if new else m.group(0)

    text = _REFERENCE.sub(local, orjson.dumps(template).decode())
    out: list[Resource] = orjson.loads(text)
    for resource in out:
        resource["id"] = ids[f"{resource['resourceType']}/{resource['id']}"]
        for ident in resource.get("identifier", []):
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                ident["value"] = f"{ident['value']}-c{n}"
    return [_dates(r, days) for r in out]


def clones(
    all_templates: dict[str, list[Resource]], start: int, seed: int = 7
) -> Iterator[tuple[int, list[Resource]]]:
    """Clones of every template in turn, forever, numbered from ``start``."""
    import random

    rng = random.Random(seed + start)
    names = sorted(all_templates)
    n = start
    while True:
        template = all_templates[names[n % len(names)]]
        yield n, clone(template, n, rng.randint(-3650, 3650))
        n += 1
