"""Shared benchmark plumbing: fresh databases and a real `hie serve` process."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; a worktree elsewhere names it with HIE_BENCH_TESTDATA.
SHARED = Path(os.environ.get("HIE_BENCH_TESTDATA") or ROOT.parent / "shared" / "testdata")
PG_ADMIN = os.environ.get(
    "HIE_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_database(kind: str, workdir: Path, name: str = "hie_bench") -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir}/hie.db"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def env_for(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIE_")}
    env.update(
        HIE_DATABASE_URL=db_url,
        HIE_DATA_DIR=str(data_dir),
        HIE_HTTP_PORT=str(free_port()),
        HIE_DICOM_PORT=str(free_port()),
        HIE_MLLP_PORT=str(free_port()),
        HIE_CONFIG_DIR=str(ROOT / "config"),
    )
    env.update(extra)
    return env


def hie(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hie", *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """Migrate, start `hie serve`, yield its FHIR base URL, stop it."""
    hie(env, "db", "upgrade")
    base = f"http://127.0.0.1:{env['HIE_HTTP_PORT']}/fhir"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hie", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/metadata", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("hie serve did not start") from None
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=90)  # it stops its listeners first: slow on a busy machine
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hie-bench-") as name:
        yield Path(name)


def services_for(env: dict[str, str]) -> Any:
    """The exchange's services (``hie.app.build_services``) as a process with ``env`` builds
    them, for benches that check results through the exchange itself."""
    sys.path.insert(0, str(ROOT))
    from hie.app import build_services
    from hie.settings import load_settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return build_services(load_settings())
    finally:
        os.environ.clear()
        os.environ.update(saved)


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.2f} at start"
