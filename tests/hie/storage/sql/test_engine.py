"""Engine settings that search latency depends on."""

from __future__ import annotations

import sqlalchemy as sa

from hie.storage.sql.engine import build_engine
from tests.support import PG_URL, require_pg


def _setting(url: str, name: str) -> str:
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            # Run the statement often enough for psycopg to prepare it.
            for _ in range(12):
                value = conn.execute(sa.text("SELECT current_setting(:n)"), {"n": name}).scalar()
            return str(value)
    finally:
        engine.dispose()


def test_postgresql_connections_plan_with_the_values() -> None:
    require_pg()
    assert _setting(PG_URL, "plan_cache_mode") == "force_custom_plan"


def test_options_in_the_url_are_kept() -> None:
    require_pg()
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-c%20statement_timeout%3D12345"
    assert _setting(url, "statement_timeout") == "12345ms"
    assert _setting(url, "plan_cache_mode") == "force_custom_plan"
