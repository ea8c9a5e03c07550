from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hie.search import Extractor, QueryParser, SearchRegistry, default_registry

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "search"
LOCAL_BASE = "https://hie.example.cn/fhir"


Finder = Callable[[str, str], dict[str, Any]]


def _load() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text("utf-8"))
        if data.get("resourceType") == "Bundle":
            out.extend(e["resource"] for e in data["entry"] if "resource" in e)
        else:
            out.append(data)
    return out


@pytest.fixture(scope="session")
def fixture_resources() -> list[dict[str, Any]]:
    """Every resource of every fixture file (bundle entries flattened)."""
    return _load()


@pytest.fixture(scope="session")
def find(fixture_resources: list[dict[str, Any]]) -> Finder:
    """``find(type, id)``: a fixture resource (a deep copy, free to modify)."""

    def lookup(resource_type: str, resource_id: str) -> dict[str, Any]:
        for r in fixture_resources:
            if r["resourceType"] == resource_type and r.get("id") == resource_id:
                return copy.deepcopy(r)
        raise LookupError(f"{resource_type}/{resource_id} not in the fixtures")

    return lookup


@pytest.fixture(scope="session")
def registry() -> SearchRegistry:
    return default_registry()


@pytest.fixture(scope="session")
def extractor(registry: SearchRegistry) -> Extractor:
    return Extractor(registry, local_bases=[LOCAL_BASE])


@pytest.fixture(scope="session")
def parser(registry: SearchRegistry) -> QueryParser:
    return QueryParser(registry, local_bases=[LOCAL_BASE], max_count=500)
