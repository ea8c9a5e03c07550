"""`hie serve` drains the audit journals in a process of its own, with the request
processes' threads as the fallback."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import requests
import sqlalchemy as sa

from tests.support import running_server, server_env


def _children(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` and their command lines (Linux /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry.name)] = cmdline
    return out


def _wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_reads_are_chained_by_the_drainer_and_by_the_fallback_without_it(
    db_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(db_url)

    def chained() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one())

    try:
        with running_server(server_env(db_url, tmp_path / "var")) as server:
            drainers = [
                pid
                for pid, cmd in _children(server.process.pid).items()
                if "audit drain --follow" in cmd
            ]
            assert len(drainers) == 1, _children(server.process.pid)
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {server.token()}"
            made = s.post(f"{server.fhir}/Patient", json={"resourceType": "Patient"})
            assert made.status_code == 201
            before = chained()
            for _ in range(20):
                assert s.get(f"{server.fhir}/Patient/{made.json()['id']}").status_code == 200
            # Nothing asks the trail (which would drain first): the drainer chains them.
            assert _wait_for(lambda: chained() >= before + 20), (before, chained())

            os.kill(drainers[0], signal.SIGKILL)  # the fallback: each process's thread
            before = chained()
            for _ in range(10):
                assert s.get(f"{server.fhir}/Patient/{made.json()['id']}").status_code == 200
            assert _wait_for(lambda: chained() >= before + 10), (before, chained())
            verified = server.hie("audit", "verify")
            assert verified.startswith("ok:"), verified
    finally:
        engine.dispose()
