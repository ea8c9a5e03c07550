"""Crash safety: SIGKILL the listener mid-stream, restart, nothing ACKed is lost or doubled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.senders import SenderRegistry
from adapters.hl7v2.worker import Worker
from tests.adapters.hl7v2.hl7_support import EB, SB, FakeExchange, msa, sqlite_engine_at

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def adt(i: int) -> bytes:
    return (
        f"MSH|^~\\&|HIS|MYZX|HIE|HIE|20240101120000||ADT^A04^ADT_A01|K{i:05d}|P|2.5\r"
        f"EVN|A04|20240101120000\r"
        f"PID|1||MRN{i:05d}^^^^MR||Patient^{i}||19800101|F\r"
        f"PV1|1|O|||||||||||||||||V{i:05d}\r"
    ).encode()


def start(db: Path) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "hl7_server_main.py"), str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def stream(
    port: int, messages: list[bytes], acked: list[int], kill_after: int, kill: threading.Event
) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            buf = b""
            for i, raw in enumerate(messages):
                sock.sendall(SB + raw + EB + b"\r")
                while EB not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                end = buf.index(EB)
                if msa(buf[buf.index(SB) + 1 : end])[0] == "AA":
                    acked.append(i)
                buf = buf[end + 2 :]
                if len(acked) == kill_after:
                    kill.set()
    except OSError:
        return


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acked_message_and_duplicates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    engine = sqlite_engine_at(db)
    registry = SenderRegistry(engine)
    registry.add("HIS", "MYZX", "Organization/myzx", charset="UTF-8")
    messages = [adt(i) for i in range(600)]
    proc, port = start(db)
    acked: list[int] = []
    kill = threading.Event()
    client = threading.Thread(target=stream, args=(port, messages, acked, 100, kill))
    client.start()
    assert kill.wait(60)
    stop(proc)
    client.join(30)
    assert 100 <= len(acked) < len(messages)

    inbox = Inbox(engine)
    stored = {e.control_id for e in inbox.entries(limit=10_000)}
    assert {f"K{i:05d}" for i in acked} <= stored  # every ACKed message survived

    # Restart; the sender re-sends everything it has no ACK for, and the last ACKed one.
    proc, port = start(db)
    try:
        resend = [acked[-1], *[i for i in range(len(messages)) if i not in set(acked)]]
        answers: list[int] = []
        again = threading.Event()
        stream(port, [messages[i] for i in resend], answers, -1, again)
        assert len(answers) == len(resend)
    finally:
        stop(proc)

    counts = inbox.counts()
    assert counts["received"] == len(messages)
    assert counts["rejected"] == 0
    exchange = FakeExchange()
    Worker(inbox, registry, exchange).drain(timeout=300)
    assert inbox.counts()["mapped"] == len(messages)
    assert len(exchange.all("Patient")) == len(messages)
    assert len(exchange.all("Encounter")) == len(messages)
    assert len(exchange.all("Provenance")) == len(messages)
    engine.dispose()
