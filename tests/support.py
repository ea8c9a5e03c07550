"""Shared test helpers: databases, a configured exchange, and an authenticated API client."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

PG_URL = os.environ.get("HIE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_pg_state: dict[str, bool] = {}


def pg_available() -> bool:
    if "ok" not in _pg_state:
        try:
            engine = sa.create_engine(PG_URL)
            with engine.connect():
                pass
            engine.dispose()
            _pg_state["ok"] = True
        except sa.exc.OperationalError:
            _pg_state["ok"] = False
    return _pg_state["ok"]


def require_pg() -> None:
    """CI sets HIE_TEST_PG_URL: there a missing PostgreSQL is a failure, not a skip."""
    if pg_available():
        return
    if "HIE_TEST_PG_URL" in os.environ:
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable")
    pytest.skip("PostgreSQL is not reachable and HIE_TEST_PG_URL is not set")


def reset_pg_schema(url: str) -> None:
    from hie.storage.sql.engine import build_engine
    from hie.storage.sql.migrate import upgrade

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    engine = build_engine(url)
    upgrade(engine)
    engine.dispose()


def truncate_pg(url: str) -> None:
    from hie.storage.sql.schema import metadata

    engine = sa.create_engine(url)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def fresh_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of the given kind."""
    from hie.storage.sql.engine import build_engine
    from hie.storage.sql.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/hie.db"
        engine = build_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    url = str(request.getfixturevalue("pg_url"))
    truncate_pg(url)
    return url


class Api:
    """The Flask test client with a bearer token and FHIR JSON bodies."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.token = token

    def headers(
        self, extra: Mapping[str, str] | None = None, *, token: str | None = None
    ) -> dict[str, str]:
        out = {
            "Authorization": f"Bearer {token or self.token}",
            "Content-Type": "application/fhir+json",
        }
        out.update(extra or {})
        return out

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
    ) -> Any:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        return self.client.open(
            "/fhir/" + path.lstrip("/"),
            method=method,
            data=data,
            headers=self.headers(headers, token=token),
        )

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        headers = {"Content-Type": "application/json-patch+json", **(kw.pop("headers", None) or {})}
        return self.request("PATCH", path, body, headers=headers, **kw)


def iter_entries(bundle: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from bundle.get("entry") or []
