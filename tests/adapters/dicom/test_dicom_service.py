from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from adapters.dicom.identifiers import mrn_system, organization_id
from adapters.dicom.index import session_factory
from adapters.dicom.registry import AeRegistry
from adapters.dicom.service import serve
from tests.adapters.dicom.dicom_support import FakeRecords, run


def test_serve_runs_the_services(tmp_path: Path, sqlite_db: Engine, records: FakeRecords) -> None:
    AeRegistry(session_factory(sqlite_db)).add("ECHOSCU", "Organization/hosp-a")
    service = serve(
        records=records,
        engine=sqlite_db,
        data_dir=tmp_path / "d",
        port=0,
        ae_title="CITY",
        block=False,
    )
    try:
        host, port = service.address
        assert run(["echoscu", "-aet", "ECHOSCU", "-aec", "CITY", host, str(port)]).returncode == 0
        assert run(["echoscu", "-aet", "NOBODY", "-aec", "CITY", host, str(port)]).returncode != 0
    finally:
        service.stop()


def test_mrn_system() -> None:
    assert mrn_system("Organization/fy-1") == "urn:hie:mrn:fy-1"
    assert organization_id("Organization/a.b") == "a.b"
    with pytest.raises(ValueError):
        mrn_system("Patient/1")
