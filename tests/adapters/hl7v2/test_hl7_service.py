"""The whole service on a real socket: bad input, mllp_send, workers mapping behind the ACK."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from adapters.hl7v2.config import Hl7Config
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.senders import SenderRegistry
from adapters.hl7v2.service import Hl7Service
from tests.adapters.hl7v2.hl7_support import (
    EB,
    FIXTURES,
    SB,
    FakeExchange,
    add_sender,
    fixture_bytes,
    mllp_exchange,
    msa,
    run,
    set_control_id,
)

ADT = fixture_bytes("valid/msconv__ADT-A01-02.hl7")

# What each malformed or fuzzed file gets, and why (every one is framable, so every one is
# answered). Senders ADTApp|GHHSFacility, SEND APP|SEND FAC and 0|0 are registered.
BAD_INPUT = {
    "malformed/hapi__messages_txt_1_BAR_P01_enc_chars_bracket.hl7": (
        "AR",
        "MSH-3: the sender (MSH-3 'ADMISSION', MSH-4 'ADT1') is not r",
    ),
    "malformed/hapi__messages_txt_3_BAR_P01_three_enc_chars.hl7": (
        "AR",
        "MSH-2 encoding characters '^~}' must be 4 characters (5 with",
    ),
    "malformed/hl7apy__all_empty_msh.hl7": (
        "AR",
        "MSH-2 encoding characters '' must be 4 characters (5 with tr",
    ),
    "malformed/hl7apy__duplicate_encoding_chars.hl7": (
        "AR",
        "MSH-2 encoding characters '^&&^' must be distinct punctuatio",
    ),
    "malformed/hl7apy__incomplete_msh9.hl7": (
        "AR",
        "MSH-10: message control id is required; MSH-11: processing i",
    ),
    "malformed/hl7apy__missing_encoding_chars.hl7": (
        "AR",
        "MSH-2 encoding characters '@%\\\\' must be 4 characters (5 wit",
    ),
    "malformed/hl7apy__missing_msh9.hl7": (
        "CR",
        "MSH-9: message type is required",
    ),
    "malformed/hl7apy__missing_version.hl7": (
        "AR",
        "MSH-10: message control id is required; MSH-11: processing i",
    ),
    "malformed/hl7apy__too_many_encoding_chars.hl7": (
        "AR",
        "MSH-2 encoding characters '@%\\\\&$?!' must be 4 characters (5",
    ),
    "malformed/pyhl7__sample_bad_batch.hl7": (
        "AR",
        "MSH: the message starts with BHS, not MSH",
    ),
    "malformed/pyhl7__sample_bad_batch1.hl7": (
        "AR",
        "MSH: the message starts with BHS, not MSH",
    ),
    "malformed/pyhl7__sample_bad_file3.hl7": (
        "AR",
        "MSH: the message starts with FHS, not MSH",
    ),
    "fuzz/nhapi__LegacyPipeParser_EncodingNotSupportedException_nullref1.hl7": (
        "AR",
        "MSH-1 field separator 'H' is not a valid delimiter",
    ),
    "fuzz/nhapi__LegacyPipeParser_HL7Exception_hang1.hl7": (
        "AR",
        "MSH-2 encoding characters '^' must be 4 characters (5 with t",
    ),
    "fuzz/nhapi__LegacyPipeParser_HL7Exception_ioor1.hl7": (
        "AR",
        "MSH-2 encoding characters '0' must be 4 characters (5 with t",
    ),
    "fuzz/nhapi__LegacyPipeParser_HL7Exception_stackoverflow1.hl7": (
        "AR",
        "MSH-2 encoding characters '^' must be 4 characters (5 with t",
    ),
    "fuzz/nhapi__LegacyPipeParser_NoException_regex1.hl7": (
        "AR",
        "MSH-2 encoding characters '^\\x01\\\\0' must be distinct punctu",
    ),
    "fuzz/nhapi__PipeParser_EncodingNotSupportedException_id_000014.hl7": (
        "AR",
        "MSH: the message does not start with an MSH segment",
    ),
    "fuzz/nhapi__PipeParser_HL7Exception_id_000029.hl7": (
        "AR",
        "MSH-2 encoding characters '^~\\\\' must be 4 characters (5 wit",
    ),
    "fuzz/nhapi__PipeParser_HL7Exception_id_000064.hl7": (
        "AR",
        "MSH-2 encoding characters '' must be 4 characters (5 with tr",
    ),
    "fuzz/nhapi__PipeParser_HL7Exception_id_000092.hl7": (
        "CR",
        "MSH-18 '0' is not a supported character set",
    ),
    "fuzz/nhapi__PipeParser_HL7Exception_id_000118.hl7": (
        "AR",
        "MSH-2 encoding characters '^隣&' must be 4 characters (5 with",
    ),
    "fuzz/nhapi__PipeParser_HL7Exception_id_000123.hl7": (
        "AR",
        "MSH-2 encoding characters '^ \\\\E' must be distinct punctuati",
    ),
    "fuzz/nhapi__PipeParser_HL7Exception_so5.hl7": (
        "AR",
        "MSH-2 encoding characters '0~00' must be distinct punctuatio",
    ),
    "fuzz/nhapi__PipeParser_NoException_id_000109.hl7": (
        "AR",
        "MSH-11: processing id '0' is not P, T or D",
    ),
    "fuzz/nhapi__PipeParser_NoException_id_000168.hl7": (
        "AR",
        "MSH-2 encoding characters '^~y0' must be distinct punctuatio",
    ),
}


@contextlib.asynccontextmanager
async def running(
    engine: Engine, exchange: FakeExchange, workers: int = 0, **config: Any
) -> AsyncIterator[Hl7Service]:
    svc = Hl7Service(
        engine, exchange, Hl7Config(port=0, workers=workers, **config), run_workers=workers > 0
    )
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


def test_bad_input_table_covers_every_file() -> None:
    files = {
        f"{p.parent.name}/{p.name}"
        for folder in ("malformed", "fuzz")
        for p in (FIXTURES / folder).glob("*.hl7")
    }
    assert set(BAD_INPUT) == files


def test_every_malformed_and_fuzzed_message_gets_an_ack_and_the_listener_lives_on(
    sqlite_engine: Engine, exchange: FakeExchange
) -> None:
    registry = SenderRegistry(sqlite_engine)
    add_sender(registry, "ADTApp", "GHHSFacility")
    add_sender(registry, "SEND APP", "SEND FAC")
    add_sender(registry, "0", "0")
    names = sorted(BAD_INPUT)

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        async with running(sqlite_engine, exchange, read_timeout=2) as svc:
            payloads = [(FIXTURES / n).read_bytes() for n in names]
            one_by_one = await asyncio.to_thread(mllp_exchange, svc.port, payloads)
            # All at once on another connection, without waiting between frames.
            burst = await asyncio.to_thread(_burst, svc.port, payloads)
            after = await asyncio.to_thread(mllp_exchange, svc.port, [ADT])
            return one_by_one, burst, after

    one_by_one, burst, after = run(scenario())
    assert [msa(a)[0] for a in one_by_one] == [BAD_INPUT[n][0] for n in names]
    assert [msa(a)[0] for a in burst] == [BAD_INPUT[n][0] for n in names]
    assert msa(after[0]) == ("AA", "MSG00001")
    rejected = Inbox(sqlite_engine).entries(["rejected"], limit=1000)
    assert len(rejected) == 2 * len(names)
    for name, entry in zip(names, rejected[: len(names)], strict=True):
        assert (entry.error or "").startswith(BAD_INPUT[name][1]), name


def _burst(port: int, payloads: list[bytes]) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"".join(SB + p + EB + b"\r" for p in payloads))
        data = b""
        while data.count(EB) < len(payloads):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [f[f.index(SB) + 1 :] for f in data.split(EB)[: len(payloads)]]


def test_unframable_bytes_and_truncated_frames_are_dropped_without_harm(
    sqlite_engine: Engine, exchange: FakeExchange
) -> None:
    add_sender(SenderRegistry(sqlite_engine), "ADTApp", "GHHSFacility")

    async def scenario() -> tuple[bytes, bytes, list[bytes]]:
        async with running(sqlite_engine, exchange, read_timeout=0.5) as svc:
            raw_fuzz = (FIXTURES / "fuzz/nhapi__PipeParser_HL7Exception_id_000123.hl7").read_bytes()
            unframed = await asyncio.to_thread(_send_and_wait_close, svc.port, raw_fuzz)
            truncated = await asyncio.to_thread(_send_and_wait_close, svc.port, SB + ADT[:100])
            ok = await asyncio.to_thread(mllp_exchange, svc.port, [ADT])
            return unframed, truncated, ok

    unframed, truncated, ok = run(scenario())
    assert unframed == b""
    assert truncated == b""
    assert msa(ok[0])[0] == "AA"
    assert len(Inbox(sqlite_engine).entries()) == 1


def _send_and_wait_close(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    return received


MLLP_SEND = shutil.which("mllp_send") or str(Path(sys.executable).parent / "mllp_send")


@pytest.mark.skipif(not Path(MLLP_SEND).exists(), reason="mllp_send (package hl7) not installed")
def test_mllp_send_end_to_end_with_workers_mapping_behind_the_ack(
    sqlite_engine: Engine, exchange: FakeExchange, tmp_path: Path
) -> None:
    registry = SenderRegistry(sqlite_engine)
    add_sender(registry, "ADTApp", "GHHSFacility")
    add_sender(
        registry, "NIST Test Lab APP", "NIST Lab Facility", organization="Organization/nist-lab"
    )
    feed = tmp_path / "feed.hl7"
    adt = fixture_bytes("valid/msconv__ADT-A01-01.hl7")
    oru = fixture_bytes("valid/msconv__LRI_2.0-NG_CBC_Typ_Message.hl7")
    feed.write_bytes((adt + b"\n" + oru).replace(b"\r", b"\r\n"))
    executable = MLLP_SEND

    async def scenario() -> tuple[str, dict[str, int]]:
        async with running(sqlite_engine, exchange, workers=2) as svc:
            result = await asyncio.to_thread(
                subprocess.run,
                [executable, "--loose", "--file", str(feed), "--port", str(svc.port), "127.0.0.1"],
                capture_output=True,
                timeout=60,
                check=True,
            )
            deadline = time.monotonic() + 30
            inbox = Inbox(sqlite_engine)
            while inbox.counts()["received"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return result.stdout.decode(), inbox.counts()

    stdout, counts = run(scenario())
    assert "MSA|AA|MSG00001" in stdout
    assert "MSA|CA|NIST-LRI-NG-002.00" in stdout
    assert counts["mapped"] == 2
    assert len(exchange.all("Observation")) == 28
    assert len(exchange.all("DiagnosticReport")) == 1
    assert len(exchange.all("Patient")) == 2


def test_resend_after_mapping_duplicates_nothing(
    sqlite_engine: Engine, exchange: FakeExchange
) -> None:
    add_sender(SenderRegistry(sqlite_engine), "ADTApp", "GHHSFacility")
    adt = fixture_bytes("valid/msconv__ADT-A01-01.hl7")
    second = set_control_id(adt, "SECOND")  # the same events again under a new control id

    async def scenario() -> list[bytes]:
        async with running(sqlite_engine, exchange, workers=1) as svc:
            answers = await asyncio.to_thread(mllp_exchange, svc.port, [adt, adt, second])
            inbox = Inbox(sqlite_engine)
            deadline = time.monotonic() + 30
            while inbox.counts()["received"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return answers

    first, again, second_ack = run(scenario())
    assert first == again
    assert msa(second_ack) == ("AA", "SECOND")
    for rtype in ("Patient", "Encounter", "RelatedPerson", "AllergyIntolerance", "Condition"):
        assert len(exchange.all(rtype)) == 1, rtype
    assert len(exchange.all("Provenance")) == 2  # one per message
