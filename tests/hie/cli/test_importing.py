"""`hie import`: bundles and NDJSON through the exchange, with a summary and no early stop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hie.app import build_services
from hie.cli import main
from hie.context import RequestContext
from hie.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Plain FHIR storage: these tests count Patients, so no enterprise Patients."""
    return settings.replace(identity__enabled=False)


FIXTURES = Path(__file__).parents[2] / "fixtures" / "fhir"


def env_for(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "HIE_DATABASE_URL": settings.database.url,
        "HIE_DATA_DIR": str(tmp_path / "var"),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[3] / "config"),
        "HIE_IDENTITY_ENABLED": "true" if settings.identity.enabled else "false",
    }


def count(settings: Settings, rtype: str) -> int:
    services = build_services(settings)
    try:
        result = services.exchange.search(RequestContext.system(), rtype, [("_summary", "count")])
        return result.total or 0
    finally:
        services.close()


def test_import_ndjson_folder_and_bundle(settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "in"
    shutil.copytree(FIXTURES / "synthea-ndjson", data / "ndjson")
    shutil.copy(
        FIXTURES / "synthea-bundles" / "7b4cf3d5-26bd-4c44-8f45-f11928c63c0e.transaction.json", data
    )
    result = CliRunner().invoke(main, ["import", str(data)], env=env_for(settings, tmp_path))
    assert result.exit_code == 0, result.output
    assert "files: 10 loaded, 0 failed" in result.output
    assert "errors: 0" in result.output
    assert count(settings, "Patient") == 13 + 1
    assert count(settings, "Condition") == 555 + 6
    again = CliRunner().invoke(
        main, ["import", str(data / "ndjson")], env=env_for(settings, tmp_path)
    )
    assert again.exit_code == 0, again.output
    assert count(settings, "Patient") == 14, "NDJSON keeps ids, so a re-import creates nothing"


def test_import_reports_bad_files_and_lines_without_stopping(
    settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "in"
    data.mkdir()
    (data / "a-broken.json").write_text("{oops")
    (data / "b-lines.ndjson").write_text(
        '{"resourceType":"Patient","id":"ok1"}\n'
        "not json\n"
        '{"resourceType":"Patient","id":"bad","gender":"mail"}\n'
        '{"resourceType":"Patient","id":"ok2"}\n'
    )
    shutil.copy(
        FIXTURES / "synthea-bundles" / "Bob965_Keeling57_3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b.json",
        data / "c-bob.json",
    )
    shutil.copy(FIXTURES / "synthea-ndjson" / "Organization.000.ndjson", data / "d-orgs.ndjson")
    result = CliRunner().invoke(main, ["import", str(data)], env=env_for(settings, tmp_path))
    assert result.exit_code == 1
    assert "files: 1 loaded, 3 failed" in result.output
    assert "a-broken.json" in result.output
    assert "b-lines.ndjson:2" in result.output
    assert "b-lines.ndjson:3" in result.output
    assert "c-bob.json" in result.output
    assert count(settings, "Patient") == 2
    assert count(settings, "Organization") == 43


@pytest.mark.parametrize("args", [["import"], ["import", "/no/such/path"]])
def test_import_usage_errors(args: list[str], settings: Settings, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, args, env=env_for(settings, tmp_path))
    assert result.exit_code == 2
