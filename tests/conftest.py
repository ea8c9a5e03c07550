"""Fixtures: every store test runs on SQLite and on PostgreSQL (HIE_TEST_PG_URL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from hie.app import Services, build_services, create_app
from hie.settings import Settings
from tests.support import PG_URL, Api, fresh_database, require_pg, reset_pg_schema

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def pg_url() -> str:
    require_pg()
    reset_pg_schema(PG_URL)
    return PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_database(request.param, request, tmp_path)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings().replace(database__url=db_url, data__dir=str(tmp_path / "var"))


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    yield built
    built.close()


@pytest.fixture
def app(services: Services) -> Flask:
    return create_app(services=services)


@pytest.fixture
def token(services: Services) -> str:
    return services.issuer.issue(subject="tester", scope="system/*.cruds", ttl=3600)


@pytest.fixture
def api(app: Flask, token: str) -> Api:
    return Api(app.test_client(), token)
