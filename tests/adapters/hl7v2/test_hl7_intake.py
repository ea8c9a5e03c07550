"""Intake end to end through a real socket: store before ACK, duplicates, senders, modes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Engine, text

from adapters.hl7v2.config import Hl7Config
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.senders import SenderDefaults, SenderRegistry
from adapters.hl7v2.service import Hl7Service
from tests.adapters.hl7v2.hl7_support import (
    FakeExchange,
    add_sender,
    err_text,
    fixture_bytes,
    mllp_exchange,
    msa,
    run,
    set_control_id,
)

ADT = fixture_bytes("valid/msconv__ADT-A01-02.hl7")


@contextlib.asynccontextmanager
async def service(
    engine: Engine, exchange: FakeExchange, **config: Any
) -> AsyncIterator[Hl7Service]:
    svc = Hl7Service(engine, exchange, Hl7Config(port=0, **config), run_workers=False)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


def talk(
    engine: Engine, exchange: FakeExchange, payloads: list[bytes], **config: Any
) -> list[bytes]:
    async def scenario() -> list[bytes]:
        async with service(engine, exchange, **config) as svc:
            return await asyncio.to_thread(mllp_exchange, svc.port, payloads)

    return run(scenario())  # type: ignore[no-any-return]


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, control_id, state, error, ack_code, duplicate_of, peer, charset"
                    " FROM hl7_inbox ORDER BY id"
                )
            )
        )


def test_message_is_stored_before_it_is_acknowledged(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    add_sender(registry, "ADTApp", "GHHSFacility")
    seen: list[list[Any]] = []

    async def scenario() -> bytes:
        async with service(engine, exchange) as svc:
            original = svc.committer.inbox.store_batch

            def spy(messages: Any) -> Any:
                result = original(messages)
                seen.append(rows(engine))  # committed: visible from another connection
                return result

            svc.committer.inbox.store_batch = spy  # type: ignore[method-assign]
            return (await asyncio.to_thread(mllp_exchange, svc.port, [ADT]))[0]

    ack = run(scenario())
    assert msa(ack) == ("AA", "MSG00001")
    assert [r.control_id for r in seen[0]] == ["MSG00001"]
    stored = rows(engine)[0]
    assert (stored.state, stored.ack_code, stored.charset) == ("received", "AA", "utf-8")
    assert stored.peer.startswith("127.0.0.1:")


def test_identical_resend_gets_the_original_ack_and_is_not_stored_again(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    add_sender(registry, "ADTApp", "GHHSFacility")
    first, again = talk(engine, exchange, [ADT, ADT])
    assert again == first
    assert len(rows(engine)) == 1


def test_changed_resend_is_an_ae_naming_the_conflict_and_kept_for_review(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    add_sender(registry, "ADTApp", "GHHSFacility")
    changed = ADT.replace(b"EVERYMAN", b"EVERYONE")
    first, conflict = talk(engine, exchange, [ADT, changed])
    assert msa(first)[0] == "AA"
    assert msa(conflict) == ("AE", "MSG00001")
    assert "MSG00001" in err_text(conflict)
    assert "different content" in err_text(conflict)
    original, kept = rows(engine)
    assert (kept.state, kept.duplicate_of) == ("rejected", original.id)
    assert kept.error.startswith("conflict: MSH-10")


def test_unknown_sender_is_refused_with_a_clear_err(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    (ack,) = talk(engine, exchange, [ADT])
    assert msa(ack) == ("AR", "MSG00001")
    assert "MSH-3 'ADTApp', MSH-4 'GHHSFacility'" in err_text(ack)
    assert "not registered" in err_text(ack)
    assert b"|103^Table value not found^HL70357|E|" in ack
    assert rows(engine)[0].state == "rejected"


def test_unknown_sender_is_registered_on_first_contact_when_allowed(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    defaults = SenderDefaults("Organization/default", "GB18030", "+08:00")
    (ack,) = talk(engine, exchange, [ADT], accept_unregistered=True, defaults=defaults)
    assert msa(ack)[0] == "AA"
    sender = registry.lookup("ADTApp", "GHHSFacility")
    assert sender is not None
    assert sender.auto_registered
    assert (sender.organization, sender.charset, sender.tz_offset) == (
        "Organization/default",
        "GB18030",
        "+08:00",
    )


def test_content_errors_are_ae_and_refusals_ar(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    add_sender(registry, "GHH LAB", "ELAB-3")
    add_sender(registry, "ADTApp", "GHHSFacility")
    bad_date = fixture_bytes("valid/pyhl7__sample_hl7.hl7")
    unsupported = fixture_bytes("valid/msconv__ADT-A47-01.hl7")
    version = ADT.replace(b"|P|2.8|", b"|P|3.0|")
    a, b, c = talk(engine, exchange, [bad_date, unsupported, set_control_id(version, "V3")])
    assert msa(a) == ("AE", "CNTRL-3456")
    assert "PID-7" in err_text(a)
    assert "196203520" in err_text(a)
    assert msa(b)[0] == "AR"
    assert "ADT^A47" in err_text(b)
    assert msa(c) == ("AR", "V3")
    assert "version '3.0'" in err_text(c)


def test_enhanced_mode_answers_commit_acks(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    add_sender(registry, "NIST Test Lab APP", "NIST Lab Facility")
    oru = fixture_bytes("valid/msconv__LRI_2.0-NG_CBC_Typ_Message.hl7")  # MSH-15 AL
    broken = set_control_id(oru.replace(b"\rOBR|1|", b"\rXBR|1|"), "NO-OBR")
    ok, error = talk(engine, exchange, [oru, broken])
    assert msa(ok) == ("CA", "NIST-LRI-NG-002.00")
    assert msa(error) == ("CE", "NO-OBR")
    assert "OBR" in err_text(error)


def test_unreadable_header_gets_ar_with_a_minimal_msh_and_is_stored(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    (ack,) = talk(engine, exchange, [b"MSH|^~|APP|FAC|||20240101||ADT^A01|BAD-1|P|2.5\r"])
    assert ack.startswith(b"MSH|^~\\&|HIE|")
    assert msa(ack) == ("AR", "BAD-1")
    assert "MSH-2" in err_text(ack)
    stored = rows(engine)[0]
    assert stored.state == "rejected"
    assert "encoding characters" in stored.error


def test_oversized_message_is_refused_and_the_connection_goes_on(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    add_sender(registry, "ADTApp", "GHHSFacility")
    huge = ADT + b"NTE|1||" + b"x" * 20000 + b"\r"
    big, small = talk(
        engine, exchange, [huge, set_control_id(ADT, "SMALL")], max_message_bytes=8000
    )
    assert msa(big) == ("AR", "MSG00001")
    assert "exceeds the maximum of 8000 bytes" in err_text(big)
    assert msa(small) == ("AA", "SMALL")
    assert [r.control_id for r in rows(engine)] == ["SMALL"]


def test_gb18030_sender_without_msh18(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    add_sender(registry, "HIS", "绵阳市中心医院", charset="GB18030")
    raw = (
        "MSH|^~\\&|HIS|绵阳市中心医院|HIE|HIE|20240101120000||ADT^A04^ADT_A01|CN-1|P|2.5\r"
        "EVN|A04|20240101120000\r"
        "PID|1||M100^^^^MR||张億^三||19900307|M\r"
        "PV1|1|O\r"
    ).encode("gb18030")
    (ack,) = talk(engine, exchange, [raw])
    assert msa(ack) == ("AA", "CN-1")
    assert "绵阳市中心医院" in ack.decode("gb18030")
    stored = Inbox(engine).get(rows(engine)[0].id)
    assert stored is not None
    assert stored.raw == raw
    assert stored.charset == "gb18030"


def test_strict_senders_are_validated_by_hl7apy_in_order(
    engine: Engine, registry: SenderRegistry, exchange: FakeExchange
) -> None:
    add_sender(registry, "AccMgr", "1", strict=True)
    conforming = fixture_bytes("valid/msconv__ADT01-23.hl7")  # passes hl7apy strict
    # PID-8 (IS) with components: fine for the fast reader, refused by hl7apy.
    broken = set_control_id(conforming.replace(b"|M||1|", b"|M^x||1|", 1), "S2")
    third = set_control_id(conforming, "S3")
    ok, bad, ok3 = talk(engine, exchange, [conforming, broken, third])
    assert msa(ok) == ("AA", "599102")
    assert msa(bad)[0] == "AE"
    assert "strict validation (hl7apy)" in err_text(bad)
    assert msa(ok3) == ("AA", "S3")
    assert [r.control_id for r in rows(engine)] == ["599102", "S2", "S3"]
