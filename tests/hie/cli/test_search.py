"""`hie search reindex`: rebuilds what searches use, with a progress bar."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hie.app import build_services
from hie.cli import main
from hie.context import RequestContext
from hie.settings import Settings
from tests.hie.cli.test_importing import env_for


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Plain FHIR storage: these tests count Patients, so no enterprise Patients."""
    return settings.replace(identity__enabled=False)


def found(settings: Settings, rtype: str, params: list[tuple[str, str]]) -> int:
    services = build_services(settings)
    try:
        result = services.exchange.search(RequestContext.system(), rtype, params)
        return result.total or 0
    finally:
        services.close()


def test_reindex_all_and_one_type(settings: Settings, tmp_path: Path) -> None:
    services = build_services(settings)
    ctx = RequestContext.system()
    try:
        services.exchange.create(ctx, "Patient", {"resourceType": "Patient", "gender": "female"})
        services.exchange.create(
            ctx, "Organization", {"resourceType": "Organization", "name": "绵阳市中心医院"}
        )
        with services.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM idx_token")
            conn.exec_driver_sql("DELETE FROM idx_string")
    finally:
        services.close()
    assert found(settings, "Patient", [("gender", "female")]) == 0
    env = env_for(settings, tmp_path)
    one = CliRunner().invoke(main, ["search", "reindex", "--type", "Patient"], env=env)
    assert one.exit_code == 0, one.output
    assert "reindexed 1 resources" in one.output
    assert found(settings, "Patient", [("gender", "female")]) == 1
    assert found(settings, "Organization", [("name", "绵阳")]) == 0
    every = CliRunner().invoke(main, ["search", "reindex", "--batch", "1"], env=env)
    assert every.exit_code == 0, every.output
    assert "reindexed 2 resources" in every.output
    assert found(settings, "Organization", [("name", "绵阳")]) == 1


def test_reindex_of_an_unknown_type_fails_cleanly(settings: Settings, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["search", "reindex", "--type", "Nothing"], env=env_for(settings, tmp_path)
    )
    assert result.exit_code == 1
    assert "Nothing" in result.output
