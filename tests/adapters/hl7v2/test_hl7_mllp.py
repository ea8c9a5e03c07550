"""MLLP framing and the asyncio listener, through real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.hl7v2.mllp import Framer, Inbound, ListenerConfig, MllpServer, frame
from tests.adapters.hl7v2.hl7_support import run

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"


# -- framing ----------------------------------------------------------------------------------


def test_frames_split_across_reads() -> None:
    framer = Framer(1000)
    data = frame(b"MSH|one") + frame(b"MSH|two")
    out = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert [p for p, _, _ in out] == [b"MSH|one", b"MSH|two"]
    assert not framer.busy


def test_junk_between_frames_is_dropped_and_counted() -> None:
    framer = Framer(1000)
    out = framer.feed(b"garbage" + frame(b"A") + b"\r\n  " + frame(b"B") + b"xx")
    assert [p for p, _, _ in out] == [b"A", b"B"]
    assert framer.junk == 2
    assert framer.busy


def test_whitespace_between_frames_is_not_junk() -> None:
    framer = Framer(1000)
    framer.feed(frame(b"A") + b"\r\n\r\n")
    assert framer.junk == 0
    assert not framer.busy


def test_restart_inside_a_frame_abandons_the_partial_frame() -> None:
    framer = Framer(1000)
    out = framer.feed(SB + b"MSH|trunc" + SB + b"MSH|whole" + EB + CR)
    assert [p for p, _, _ in out] == [b"MSH|whole"]


def test_end_block_without_cr_still_ends_the_frame() -> None:
    framer = Framer(1000)
    assert [p for p, _, _ in framer.feed(SB + b"A" + EB + SB + b"B" + EB)] == [b"A", b"B"]


def test_oversized_frame_is_read_to_its_end_and_reported_with_its_head() -> None:
    framer = Framer(100)
    payload = b"MSH|^~\\&|" + b"x" * 5000
    out = framer.feed(frame(payload)[:3000]) + framer.feed(frame(payload)[3000:] + frame(b"ok"))
    assert len(out) == 2
    head, size, oversized = out[0]
    assert oversized
    assert size == len(payload)
    assert head.startswith(b"MSH|^~\\&|")
    assert len(head) <= 4096
    assert out[1] == (b"ok", 2, False)


# -- listener ------------------------------------------------------------------------------


async def echo(inbound: Inbound) -> bytes:
    if inbound.payload == b"slow":
        await asyncio.sleep(0.3)
    return b"ACK:" + inbound.payload


async def _client(
    port: int, payloads: list[bytes], *, tls: ssl.SSLContext | None = None
) -> list[bytes]:
    clients = _Clients()
    try:
        reader, writer = await clients.open(port, tls)
        answers = []
        for p in payloads:
            writer.write(frame(p))
            await writer.drain()
            answers.append(await _read_frame(reader))
        return answers
    finally:
        await clients.close()


class _Clients:
    """Client connections a test opens, all closed at its end (no ResourceWarnings)."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def open(
        self, port: int, tls: ssl.SSLContext | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        self.writers.append(writer)
        return reader, writer

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


async def _closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (EOF, or a reset when unread data was pending)."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionError:  # reset, or the client's own write hit the closed socket
        return True


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    data = await asyncio.wait_for(reader.readuntil(EB + CR), 10)
    return data[data.index(SB) + 1 : -2]


def test_many_persistent_connections_each_get_one_answer_per_frame() -> None:
    async def scenario() -> list[list[bytes]]:
        server = MllpServer(echo, ListenerConfig(port=0))
        await server.start()
        clients = _Clients()
        try:
            jobs = [
                _client(server.port, [f"c{c}-m{m}".encode() for m in range(20)]) for c in range(30)
            ]
            return await asyncio.gather(*jobs)
        finally:
            await clients.close()
            await server.close()

    results = run(scenario())
    for c, answers in enumerate(results):
        assert answers == [f"ACK:c{c}-m{m}".encode() for m in range(20)]


def test_pipelined_frames_are_answered_in_order() -> None:
    async def scenario() -> list[bytes]:
        server = MllpServer(echo, ListenerConfig(port=0))
        await server.start()
        clients = _Clients()
        try:
            reader, writer = await clients.open(server.port)
            writer.write(frame(b"slow") + frame(b"fast") + frame(b"last"))
            answers = [await _read_frame(reader) for _ in range(3)]
            return answers
        finally:
            await clients.close()
            await server.close()

    assert run(scenario()) == [b"ACK:slow", b"ACK:fast", b"ACK:last"]


def test_garbage_and_silent_clients_are_dropped_while_others_are_served() -> None:
    async def scenario() -> tuple[bool, bool, list[bytes], float]:
        server = MllpServer(echo, ListenerConfig(port=0, read_timeout=0.5, idle_timeout=1.0))
        await server.start()
        clients = _Clients()
        try:
            g_reader, g_writer = await clients.open(server.port)
            s_reader, _ = await clients.open(server.port)
            t_reader, t_writer = await clients.open(server.port)
            t_writer.write(SB + b"MSH|truncated")  # a frame that never ends
            start = time.monotonic()
            served = []
            for i in range(8):  # a good client keeps being served meanwhile
                with contextlib.suppress(ConnectionError):  # dropped already
                    g_writer.write(b"\x00garbage\xff" * 10)
                served += await _client(server.port, [f"ok{i}".encode()])
                await asyncio.sleep(0.1)
            garbage_closed = await _closed(g_reader)
            truncated_closed = await _closed(t_reader)
            assert await _closed(s_reader)
            return garbage_closed, truncated_closed, served, time.monotonic() - start
        finally:
            await clients.close()
            await server.close()

    garbage, truncated, served, elapsed = run(scenario())
    assert garbage
    assert truncated
    assert served == [f"ACK:ok{i}".encode() for i in range(8)]
    assert elapsed < 5


def test_slow_sender_dribbling_a_frame_within_the_timeout_is_answered() -> None:
    async def scenario() -> bytes:
        server = MllpServer(echo, ListenerConfig(port=0, read_timeout=3.0))
        await server.start()
        clients = _Clients()
        try:
            reader, writer = await clients.open(server.port)
            for byte in frame(b"MSH|slowly"):
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.01)
            return await _read_frame(reader)
        finally:
            await clients.close()
            await server.close()

    assert run(scenario()) == b"ACK:MSH|slowly"


def test_connection_limit_refuses_extra_connections() -> None:
    async def scenario() -> tuple[bool, list[bytes], int]:
        server = MllpServer(echo, ListenerConfig(port=0, max_connections=2))
        await server.start()
        clients = _Clients()
        try:
            held = [await clients.open(server.port) for _ in range(2)]
            await asyncio.sleep(0.1)
            reader, _ = await clients.open(server.port)
            refused = await _closed(reader)
            w = held[0][1]
            w.write(frame(b"still"))
            answer = await _read_frame(held[0][0])
            return refused, [answer], server.refused_connections
        finally:
            await clients.close()
            await server.close()

    refused, answers, count = run(scenario())
    assert refused
    assert answers == [b"ACK:still"]
    assert count == 1


def test_half_closed_client_still_gets_its_answers() -> None:
    async def scenario() -> bytes:
        server = MllpServer(echo, ListenerConfig(port=0))
        await server.start()
        clients = _Clients()
        try:
            reader, writer = await clients.open(server.port)
            writer.write(frame(b"slow") + frame(b"two"))
            writer.write_eof()
            return await asyncio.wait_for(reader.read(), 5)
        finally:
            await clients.close()
            await server.close()

    assert run(scenario()) == frame(b"ACK:slow") + frame(b"ACK:two")


def test_handler_failure_closes_only_that_connection() -> None:
    async def flaky(inbound: Inbound) -> bytes:
        if inbound.payload == b"boom":
            raise RuntimeError("handler bug")
        return b"ACK"

    async def scenario() -> tuple[bool, list[bytes]]:
        server = MllpServer(flaky, ListenerConfig(port=0))
        await server.start()
        clients = _Clients()
        try:
            reader, writer = await clients.open(server.port)
            writer.write(frame(b"boom"))
            closed = await _closed(reader)
            return closed, await _client(server.port, [b"fine"])
        finally:
            await clients.close()
            await server.close()

    closed, answers = run(scenario())
    assert closed
    assert answers == [b"ACK"]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False

    async def scenario() -> tuple[list[bytes], bytes]:
        server = MllpServer(echo, ListenerConfig(port=0, ssl=server_ctx, read_timeout=2))
        await server.start()
        clients = _Clients()
        try:
            answers = await _client(server.port, [b"secret"], tls=client_ctx)
            # A plain-text client cannot talk to a TLS listener.
            reader, writer = await clients.open(server.port)
            writer.write(frame(b"plain"))
            plain = await asyncio.wait_for(reader.read(), 10)
            return answers, plain
        finally:
            await clients.close()
            await server.close()

    answers, plain = run(scenario())
    assert answers == [b"ACK:secret"]
    assert b"ACK:plain" not in plain


@pytest.mark.parametrize("size", [1, 7, 64, 4096])
def test_random_chunking_keeps_frames_intact(size: int) -> None:
    payloads = [f"MSH|{i}|{'x' * (i * 37 % 300)}".encode() for i in range(50)]
    data = b"".join(frame(p) for p in payloads)
    framer = Framer(10_000)
    out = []
    for i in range(0, len(data), size):
        out += framer.feed(data[i : i + size])
    assert [p for p, _, _ in out] == payloads
