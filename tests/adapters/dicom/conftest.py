from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event

from adapters.dicom.index import session_factory
from adapters.dicom.models import metadata
from adapters.dicom.service import DicomConfig, DicomService
from tests.adapters.dicom.dicom_support import ORG_A, ORG_B, FakeRecords, ServiceFactory, run


def sqlite_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    metadata.create_all(engine)
    return engine


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Engine]:
    engine = sqlite_engine(tmp_path / "hie.db")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_db() -> Iterator[Engine]:
    url = os.environ.get("HIE_TEST_PG_URL")
    if not url:
        pytest.skip("HIE_TEST_PG_URL is not set")
    engine = create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def db(request: pytest.FixtureRequest) -> Engine:
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def records() -> FakeRecords:
    return FakeRecords()


@pytest.fixture
def make_service(
    tmp_path: Path, records: FakeRecords, sqlite_db: Engine
) -> Iterator[ServiceFactory]:
    started: list[DicomService] = []

    def make(engine: Engine | None = None, listen: bool = True, **overrides: Any) -> DicomService:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "ae_title": "HIE",
            "port": 0,
            "sync_quiet": 0.2,
            "sync_max_delay": 0.8,
            "dicomweb_url": "http://hie.test/dicomweb",
        }
        values.update(overrides)
        service = DicomService(DicomConfig(**values), records, session_factory(engine or sqlite_db))
        for aet, org in [
            ("STORESCU", ORG_A),
            ("ECHOSCU", ORG_A),
            ("FINDSCU", ORG_B),
            ("GETSCU", ORG_B),
            ("MOVESCU", ORG_B),
            ("PYCLIENT", ORG_A),
        ]:
            service.registry.add(aet, org)
        service.start(listen=listen)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


@pytest.fixture
def service(make_service: ServiceFactory) -> DicomService:
    return make_service()


@pytest.fixture
def dcmtk() -> None:
    if run(["sh", "-c", "command -v storescu"]).returncode != 0:
        pytest.fail("dcmtk is not installed (apt-get install dcmtk)")
