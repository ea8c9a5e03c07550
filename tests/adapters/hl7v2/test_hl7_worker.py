"""Workers: one exchange transaction per message, failures kept with reasons, replay."""

from __future__ import annotations

import socket
import threading

from sqlalchemy import Engine

from adapters.hl7v2.ack import AckBuilder
from adapters.hl7v2.appacks import deliver_application_acks
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.intake import Intake
from adapters.hl7v2.operations import list_errors, replay
from adapters.hl7v2.senders import SenderRegistry
from adapters.hl7v2.worker import Worker, WorkerConfig
from hie.errors import PreconditionFailed, Unavailable
from terminology.conceptmaps import load_conceptmaps
from tests.adapters.hl7v2.hl7_support import (
    EB,
    SB,
    FakeExchange,
    add_sender,
    fixture_bytes,
    msa,
    set_control_id,
)

ADT = fixture_bytes("valid/msconv__ADT-A01-01.hl7")


class Setup:
    def __init__(self, engine: Engine, exchange: FakeExchange) -> None:
        self.registry = SenderRegistry(engine)
        self.inbox = Inbox(engine)
        self.exchange = exchange
        self.intake = Intake(self.registry, AckBuilder())
        self.worker = Worker(
            self.inbox,
            self.registry,
            exchange,
            maps=load_conceptmaps(),
            config=WorkerConfig(max_attempts=2, retry_delay=0.0),
        )

    def receive(self, raw: bytes) -> int:
        prepared, result = self.intake.receive(raw, self.inbox, "test", "mllp")
        assert result.id is not None, prepared.verdict.reason
        return result.id


def test_a_message_becomes_one_transaction_written_for_its_sender(
    engine: Engine, exchange: FakeExchange
) -> None:
    s = Setup(engine, exchange)
    add_sender(s.registry, "ADTApp", "GHHSFacility", organization="Organization/ghh")
    entry_id = s.receive(ADT)
    assert s.worker.drain() == 1
    assert s.inbox.get(entry_id).state == "mapped"  # type: ignore[union-attr]
    ((ctx, bundle),) = exchange.calls
    assert ctx.organization == "Organization/ghh"
    assert ctx.actor == "hl7v2:ADTApp|GHHSFacility"
    assert ctx.scopes.has("system/*.cruds")
    assert bundle["type"] == "transaction"
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} >= {
        "Patient",
        "Encounter",
        "Provenance",
    }


def test_mapping_and_exchange_failures_are_kept_with_their_reasons(
    engine: Engine, exchange: FakeExchange
) -> None:
    s = Setup(engine, exchange)
    add_sender(s.registry, "SCHApp", "GHHSFacility")
    add_sender(s.registry, "ADTApp", "GHHSFacility")
    no_times = (
        b"MSH|^~\\&|SCHApp|GHHSFacility|HIE|HIE|20240101||SIU^S12^SIU_S12|S-1|P|2.5\r"
        b"SCH|A100|F200|||||ROUTINE\r"
        b"PID|1||M1^^^^MR||Doe^Jane\r"
        b"RGS|1\r"
    )
    mapping_id = s.receive(no_times)
    s.worker.drain()
    failed = s.inbox.get(mapping_id)
    assert failed is not None
    assert failed.state == "failed"
    assert failed.error is not None
    assert failed.error.startswith("mapping: SCH-11: appointment start and end cannot be")
    exchange.fail_with = PreconditionFailed("Patient?identifier=x matches 2 resources")
    exchange_id = s.receive(ADT)
    s.worker.drain()
    entry = s.inbox.get(exchange_id)
    assert entry is not None
    assert entry.error == "exchange 412: Patient?identifier=x matches 2 resources"
    assert [e.id for e in list_errors(s.inbox)] == [mapping_id, exchange_id]
    # Nothing was half-written: the failed transaction left the store untouched.
    assert exchange.resources == {}


def test_transient_errors_retry_then_fail_and_replay_maps_after_the_fix(
    engine: Engine, exchange: FakeExchange
) -> None:
    s = Setup(engine, exchange)
    add_sender(s.registry, "ADTApp", "GHHSFacility")
    entry_id = s.receive(ADT)
    exchange.fail_with = Unavailable("database restarting")
    s.worker.run_once()
    entry = s.inbox.get(entry_id)
    assert entry is not None
    assert (entry.state, entry.attempts) == ("received", 1)
    s.worker.run_once()
    entry = s.inbox.get(entry_id)
    assert entry is not None
    assert entry.state == "failed"
    assert "gave up after 2 attempts" in (entry.error or "")
    exchange.fail_with = None
    ids, problems = replay(s.inbox, failed=True)
    assert (ids, problems) == ([entry_id], [])
    s.worker.drain()
    assert s.inbox.get(entry_id).state == "mapped"  # type: ignore[union-attr]
    assert len(exchange.all("Patient")) == 1


def test_one_patients_events_apply_in_order_across_workers(
    engine: Engine, exchange: FakeExchange
) -> None:
    s = Setup(engine, exchange)
    add_sender(s.registry, "ADTApp", "GHHSFacility")
    events = []
    for i in range(30):
        name = ["ADT-A01-01", "ADT-A08-01", "ADT-A03-01"][i % 3]
        events.append(set_control_id(fixture_bytes(f"valid/msconv__{name}.hl7"), f"E{i:03d}"))
    for raw in events:
        s.receive(raw)
    workers = [
        Worker(s.inbox, s.registry, exchange, name=f"w{i}", config=WorkerConfig(batch=3))
        for i in range(3)
    ]
    threads = [threading.Thread(target=w.drain) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    controls = [
        next(e for e in b["entry"] if e["resource"]["resourceType"] == "Provenance")["resource"][
            "entity"
        ][0]["what"]["identifier"]["value"]
        for _, b in exchange.calls
    ]
    assert controls == [f"E{i:03d}" for i in range(30)]
    (encounter,) = exchange.all("Encounter")
    assert encounter["status"] == "finished"  # the last event was an A03


def test_enhanced_mode_application_acks_are_built_and_delivered(
    engine: Engine, exchange: FakeExchange
) -> None:
    s = Setup(engine, exchange)
    vxu = fixture_bytes("valid/msconv__VXU.hl7")  # MSH-15 ER, MSH-16 AL
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def sender_endpoint() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while EB not in data:
                data += conn.recv(65536)
            received.append(data[data.index(SB) + 1 : data.index(EB)])
            conn.sendall(SB + b"MSH|^~\\&|NIST|||||||ACK|9|P|2.5.1\rMSA|AA|x\r" + EB + b"\r")

    thread = threading.Thread(target=sender_endpoint)
    thread.start()
    try:
        add_sender(s.registry, "NISTEHRAPP", "NISTEHRFAC", ack_address=f"127.0.0.1:{port}")
        _, result = s.intake.receive(vxu, s.inbox, "test", "mllp")
        assert msa(result.ack)[0] == "CA"  # the commit ACK on the connection
        s.worker.drain()
        assert deliver_application_acks(s.inbox, s.registry) == 1
    finally:
        thread.join(10)
        server.close()
    assert msa(received[0]) == ("AA", "NIST-IZ-AD-2.1_Send_V04_Z22")
    assert s.inbox.pending_app_acks() == []
