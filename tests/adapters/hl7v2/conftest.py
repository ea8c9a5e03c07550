"""Fixtures for the HL7 v2 adapter tests (helpers live in hl7_support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from adapters.hl7v2.senders import SenderRegistry
from tests.adapters.hl7v2.hl7_support import PG_URL, FakeExchange, postgres_engine, sqlite_engine_at


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = sqlite_engine_at(tmp_path / "hl7.db")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The inbox database, on SQLite and (with HIE_TEST_PG_URL) on PostgreSQL."""
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("HIE_TEST_PG_URL is not set")
        engine = postgres_engine()
    else:
        engine = sqlite_engine_at(tmp_path / "hl7.db")
    yield engine
    engine.dispose()


@pytest.fixture
def registry(engine: Engine) -> SenderRegistry:
    return SenderRegistry(engine)


@pytest.fixture
def exchange() -> FakeExchange:
    return FakeExchange()
