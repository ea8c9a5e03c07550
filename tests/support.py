"""Shared test helpers: databases, a configured exchange, and an authenticated API client."""

from __future__ import annotations

import contextlib
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
    from hie.schema import all_tables

    engine = sa.create_engine(url)
    names = ", ".join(all_tables())
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningServer:
    """``hie serve`` in a subprocess, as an integrator would run it."""

    def __init__(self, base: str, env: dict[str, str], process: Any, log: Path) -> None:
        self.base = base
        self.fhir = base + "/fhir"
        self.env = env
        self.process = process
        self.log = log

    def hie(self, *args: str) -> str:
        import subprocess
        import sys

        out = subprocess.run(
            [sys.executable, "-m", "hie", *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def token(self, scope: str = "system/*.cruds") -> str:
        return self.hie("token", "--scope", scope)


def server_env(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIE_")}
    env.update(
        {
            "HIE_DATABASE_URL": db_url,
            "HIE_DATA_DIR": str(data_dir),
            "HIE_HTTP_PORT": str(free_port()),
            "HIE_DICOM_PORT": str(free_port()),
            "HIE_MLLP_PORT": str(free_port()),
            "HIE_CONFIG_DIR": str(Path(__file__).parents[1] / "config"),
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def running_server(env: dict[str, str], timeout: float = 60.0) -> Iterator[RunningServer]:
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.request

    base = f"http://127.0.0.1:{env['HIE_HTTP_PORT']}"
    # Output goes to a file: an unread pipe fills up and blocks the server mid-test.
    log = tempfile.NamedTemporaryFile(prefix="hie-serve-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "hie", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                output = Path(log.name).read_text(errors="replace")
                raise RuntimeError(f"hie serve exited with {process.returncode}:\n{output}")
            try:
                with urllib.request.urlopen(base + "/fhir/metadata", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("hie serve did not become ready")
            time.sleep(0.2)
        yield RunningServer(base, env, process, Path(log.name))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)
