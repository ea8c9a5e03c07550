"""Auth tests: cheaper scrypt (the cost is a setting) so that logins are quick."""

from __future__ import annotations

from pathlib import Path

import pytest

from hie.settings import Settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings().replace(
        database__url=db_url, data__dir=str(tmp_path / "var"), auth__password_log2_n=12
    )
