"""Durable-ACK throughput of the MLLP listener, with the "frame + fsync'd insert" limit.

Prints, in one run on the same disk:

* baseline: an asyncio MLLP server that frames each message, reads MSH-10, inserts the raw
  bytes into SQLite (WAL, synchronous=FULL, one commit per message) and answers a fixed
  ACK: the floor cost of a durable ACK in Python;
* hie, 1 connection sending one message at a time (target >= 800/s);
* hie, 8 connections at once (target >= 1,500/s in total);

using ADT^A01 (tests/fixtures/hl7v2/valid/msconv__ADT-A01-01.hl7, 24 segments) with a fresh
control id per message. Clients run in a separate process.

    .venv/bin/python bench/hl7_ack.py [--messages 3000] [--database sqlite|postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.hl7v2.config import Hl7Config  # noqa: E402
from adapters.hl7v2.db import make_engine  # noqa: E402
from adapters.hl7v2.schema import metadata  # noqa: E402
from adapters.hl7v2.senders import SenderRegistry  # noqa: E402
from adapters.hl7v2.service import Hl7Service  # noqa: E402

SAMPLE = ROOT / "tests" / "fixtures" / "hl7v2" / "valid" / "msconv__ADT-A01-01.hl7"
SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"


def messages(template: bytes, prefix: str, count: int) -> list[bytes]:
    head, rest = template.split(b"\r", 1)
    fields = head.split(b"|")
    out = []
    for i in range(count):
        fields[9] = f"{prefix}{i:08d}".encode()
        out.append(b"|".join(fields) + b"\r" + rest)
    return out


# -- client (separate process) ---------------------------------------------------------------


def _send_all(port: int, payloads: list[bytes], acks: list[int]) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ok = 0
    buf = b""
    for payload in payloads:
        sock.sendall(SB + payload + EB + CR)
        while EB not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
        end = buf.index(EB)
        answer, buf = buf[:end], buf[end + 2 :]
        if b"MSA|AA" in answer or b"MSA|CA" in answer:
            ok += 1
    sock.close()
    acks.append(ok)


def client(port: int, connections: int, payloads: list[bytes], out: Any) -> None:
    per = [payloads[i::connections] for i in range(connections)]
    acks: list[int] = []
    threads = [threading.Thread(target=_send_all, args=(port, p, acks)) for p in per]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((time.perf_counter() - start, sum(acks)))


def run_client(port: int, connections: int, payloads: list[bytes]) -> tuple[float, int]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=client, args=(port, connections, payloads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result  # type: ignore[no-any-return]


# -- baseline server ------------------------------------------------------------------------


class _Baseline(asyncio.Protocol):
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            start, end = self.buf.find(SB), self.buf.find(EB)
            if start < 0 or end < 0:
                return
            payload, self.buf = self.buf[start + 1 : end], self.buf[end + 2 :]
            control = payload.split(b"\r", 1)[0].split(b"|")[9]
            self.db.execute("INSERT INTO inbox (control, raw) VALUES (?, ?)", (control, payload))
            self.db.commit()
            self.transport.write(
                SB + b"MSH|^~\\&|HIE||||||ACK|1|P|2.8\rMSA|AA|" + control + CR + EB + CR
            )


async def baseline(path: Path, payloads: list[bytes]) -> float:
    db = sqlite3.connect(path, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE inbox (id INTEGER PRIMARY KEY, control TEXT, raw BLOB)")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Baseline(db), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    elapsed, ok = await asyncio.to_thread(run_client, port, 1, payloads)
    server.close()
    db.close()
    assert ok == len(payloads), f"baseline acked {ok} of {len(payloads)}"
    return len(payloads) / elapsed


class _NoExchange:
    def transaction(self, ctx: Any, bundle: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("workers are not started in this benchmark")

    def transactions(self, items: Any) -> list[dict[str, Any]]:
        raise AssertionError("workers are not started in this benchmark")


async def hie(url: str, sample: bytes, count: int) -> tuple[float, float, int]:
    engine = make_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    SenderRegistry(engine).add("ADTApp", "GHHSFacility", "Organization/bench", charset="UTF-8")
    service = Hl7Service(engine, _NoExchange(), Hl7Config(port=0), run_workers=False)
    await service.start()
    try:
        one = messages(sample, "one", count)
        elapsed, ok = await asyncio.to_thread(run_client, service.port, 1, one)
        assert ok == count, f"1 connection: {ok} AA of {count}"
        single = count / elapsed
        many = messages(sample, "many", count * 2)
        elapsed, ok = await asyncio.to_thread(run_client, service.port, 8, many)
        assert ok == len(many), f"8 connections: {ok} AA of {len(many)}"
        eight = len(many) / elapsed
        batches = service.committer.batches
    finally:
        await service.stop()
        engine.dispose()
    return single, eight, batches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument(
        "--database", default="sqlite", help="sqlite (a temp file) or a database URL"
    )
    args = parser.parse_args()
    sample = SAMPLE.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        limit = asyncio.run(
            baseline(Path(tmp) / "baseline.db", messages(sample, "base", args.messages))
        )
        url = f"sqlite:///{tmp}/hie.db" if args.database == "sqlite" else args.database
        single, eight, batches = asyncio.run(hie(url, sample, args.messages))
    print(f"message: ADT^A01, {len(sample)} bytes; database: {args.database}")
    print(f"frame + fsync'd insert (baseline, 1 connection): {limit:8.0f} msg/s")
    print(
        f"hie durable ACK, 1 connection sequential:        {single:8.0f} msg/s"
        f"  ({single / limit:.2f} x baseline; target 800)"
    )
    print(
        f"hie durable ACK, 8 connections:                  {eight:8.0f} msg/s"
        f"  ({eight / limit:.2f} x baseline; target 1500)"
    )
    print(f"group commits: {batches} transactions for {args.messages * 3} messages")


if __name__ == "__main__":
    main()
