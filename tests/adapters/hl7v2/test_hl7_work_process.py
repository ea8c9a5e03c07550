"""``hie hl7 work``: mapping in a process of its own, as ``hie mllp`` starts it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support import server_env

ORU = (
    "MSH|^~\\&|LIS|MYSRMYY|HIE|MIANYANG|20261128083000||ORU^R01^ORU_R01|W{n:04d}|P|2.5.1\r"
    "PID|1||MRN{n:04d}^^^MYSRMYY^MR||王^小{n}||19800101|F\r"
    "OBR|1|P{n:04d}^LIS|F{n:04d}^LIS|CBC^血常规^L|||20261128083000||||||||||||||"
    "20261128083000||HM|F\r"
    "OBX|1|NM|HGB^血红蛋白^L||141|g/L|130-175|N|||F|||20261128083000\r"
)


def hie(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hie", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def states(env: dict[str, str]) -> dict[str, int]:
    out = hie(env, "hl7", "status")
    return {k: int(v) for k, v in (line.split("\t") for line in out.splitlines() if line)}


@pytest.mark.slow
def test_work_maps_what_import_left_received(tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path}/hie.db", tmp_path / "data")
    hie(env, "db", "upgrade")
    hie(env, "hl7", "sender", "add", "--app", "LIS", "--facility", "MYSRMYY",
        "--org", "Organization/mysrmyy")  # fmt: skip
    batch = tmp_path / "oru.hl7"
    # GB18030 with MSH-18 empty, as Chinese hospital systems send it
    batch.write_bytes("".join(ORU.format(n=n) for n in range(5)).encode("gb18030"))
    hie(env, "hl7", "import", "--no-map", str(batch))
    assert states(env).get("received") == 5

    log = tmp_path / "work.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "hie", "hl7", "work"], env=env, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 90
            while states(env).get("mapped", 0) < 5:
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, (states(env), log.read_text())
                time.sleep(0.5)
        finally:
            worker.terminate()
            assert worker.wait(timeout=60) == 0  # SIGTERM is a clean stop

    rows = orjson.loads(
        subprocess.run(
            [sys.executable, "-c", _COUNT, env["HIE_DATABASE_URL"]],
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    )
    assert rows == {"DiagnosticReport": 5, "Observation": 5}


# Counts through the exchange's own search, as a reader would find them.
_COUNT = """
import sys, orjson
from hie.app import build_services
from hie.context import RequestContext
from hie.settings import load_settings
services = build_services(load_settings())
ctx = RequestContext.system(actor="test")
out = {
    t: services.exchange.search(ctx, t, [("_summary", "count")]).total
    for t in ("DiagnosticReport", "Observation")
}
services.close()
sys.stdout.write(orjson.dumps(out).decode())
"""
