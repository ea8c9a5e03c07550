"""Batch files: FHS/BHS/BTS/FTS envelopes and consecutive messages, split on bytes."""

from __future__ import annotations

from adapters.hl7v2.batch import split_batch
from tests.adapters.hl7v2.hl7_support import fixture_bytes


def test_file_with_two_batches() -> None:
    content = split_batch(fixture_bytes("batch/pyhl7__sample_file1.hl7"))
    assert len(content.messages) == 3
    assert all(m.startswith(b"MSH|") and m.endswith(b"\r") for m in content.messages)
    assert content.problems == []


def test_consecutive_messages_without_envelope() -> None:
    content = split_batch(fixture_bytes("batch/pyhl7__sample_batch2.hl7"))
    assert [m.split(b"|")[9] for m in content.messages] == [b"12334456778890", b"12334456778891"]


def test_envelope_problems_are_reported() -> None:
    bad = split_batch(fixture_bytes("malformed/pyhl7__sample_bad_batch.hl7"))
    assert bad.messages == []
    assert bad.problems[0] == "line 2: segment EVN is outside any message (no MSH before it)"
    assert "BTS-1 declares 1 messages, the batch holds 0" in bad.problems


def test_gb18030_bytes_survive_splitting_and_mllp_bytes_are_ignored() -> None:
    message = "MSH|^~\\&|HIS|医院|||20240101||ADT^A01|1|P|2.5\rPID|1||M1||嘰億^三\r".encode(
        "gb18030"
    )
    content = split_batch(b"\x0b" + message + b"\x1c\r\n" + message.replace(b"|1|P", b"|2|P"))
    assert content.messages[0] == message
    assert len(content.messages) == 2
