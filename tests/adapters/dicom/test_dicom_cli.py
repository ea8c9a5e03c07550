from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import Engine

from adapters.dicom.cli import dicom_group
from adapters.dicom.index import session_factory
from adapters.dicom.registry import AeRegistry


def test_ae_commands(sqlite_db: Engine) -> None:
    ran: list[tuple[bool, int | None]] = []
    group = dicom_group(
        lambda: AeRegistry(session_factory(sqlite_db)),
        lambda worker, port: ran.append((worker, port)),
    )
    runner = CliRunner()
    added = runner.invoke(
        group,
        [
            "ae",
            "add",
            "PACS1",
            "--org",
            "Organization/hosp-a",
            "--host",
            "10.1.1.1",
            "--port",
            "104",
        ],
    )
    assert added.exit_code == 0, added.output
    assert "PACS1  Organization/hosp-a -> 10.1.1.1:104" in added.output
    assert runner.invoke(group, ["ae", "add", "BAD", "--org", "Patient/1"]).exit_code != 0
    listed = runner.invoke(group, ["ae", "list"])
    assert "PACS1" in listed.output
    assert runner.invoke(group, ["ae", "remove", "PACS1"]).exit_code == 0
    assert runner.invoke(group, ["ae", "remove", "PACS1"]).exit_code != 0
    assert AeRegistry(session_factory(sqlite_db)).all() == []
    assert runner.invoke(group, []).exit_code == 0
    assert runner.invoke(group, ["--worker", "--port", "11112"]).exit_code == 0
    assert ran == [(False, None), (True, 11112)]
