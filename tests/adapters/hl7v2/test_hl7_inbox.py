"""The durable inbox on SQLite and PostgreSQL: duplicates, claims, leases, order, replay."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import Engine

from adapters.hl7v2.inbox import Inbox, NewMessage
from adapters.hl7v2.senders import SenderRegistry
from tests.adapters.hl7v2.hl7_support import add_sender


def message(
    sender_id: int | None,
    control: str,
    body: str = "x",
    *,
    patient: str | None = None,
    state: str = "received",
) -> NewMessage:
    raw = f"MSH|^~\\&|A|F|||20240101||ADT^A01|{control}|P|2.5\rPID|1||{body}\r".encode()
    return NewMessage(
        raw=raw,
        peer="127.0.0.1:1",
        channel="mllp",
        received_at=datetime.now(UTC),
        sending_application="A",
        sending_facility="F",
        control_id=control,
        message_type="ADT^A01",
        version="2.5",
        charset="utf-8",
        sender_id=sender_id,
        state=state,  # type: ignore[arg-type]
        ack_code="AA" if state == "received" else "AE",
        ack=f"ACK {control} {body}".encode(),
        patient_key=patient,
        on_conflict=lambda prior: (f"CONFLICT {prior}".encode(), "AE", f"conflict with {prior}"),
    )


def sender_id(engine: Engine) -> int:
    return add_sender(SenderRegistry(engine), "A", "F").id


def test_store_then_read_back(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    result = inbox.store(message(sid, "C1", patient="1:M1"))
    assert result.outcome == "stored"
    assert result.ack == b"ACK C1 x"
    entry = inbox.get(result.id or 0)
    assert entry is not None
    assert (entry.control_id, entry.state, entry.patient_key, entry.sender_id) == (
        "C1",
        "received",
        "1:M1",
        sid,
    )
    assert entry.raw.startswith(b"MSH|")
    assert entry.received_at.tzinfo is not None


def test_duplicates_and_conflicts_within_and_across_batches(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    results = inbox.store_batch(
        [
            message(sid, "C1"),
            message(sid, "C1"),  # identical, same batch
            message(sid, "C1", "changed"),  # conflicting, same batch
            message(sid, "C2"),
        ]
    )
    assert [r.outcome for r in results] == ["stored", "duplicate", "conflict", "stored"]
    first = results[0].id
    assert results[1].ack == b"ACK C1 x"
    assert results[1].original_id == first
    assert results[2].original_id == first
    assert results[2].ack == f"CONFLICT {first}".encode()
    later = inbox.store_batch([message(sid, "C2"), message(sid, "C2", "again")])
    assert [r.outcome for r in later] == ["duplicate", "conflict"]
    assert later[0].ack == b"ACK C2 x"
    conflicts = inbox.entries(["rejected"])
    assert [(c.duplicate_of, c.error) for c in conflicts] == [
        (first, f"conflict with {first}"),
        (results[3].id, f"conflict with {results[3].id}"),
    ]


def test_rejected_messages_do_not_claim_the_control_id(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    refused = inbox.store(message(sid, "C1", state="rejected"))
    accepted = inbox.store(message(sid, "C1"))
    assert (refused.outcome, accepted.outcome) == ("stored", "stored")


def test_claims_keep_each_patient_in_arrival_order(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    ids = [
        r.id
        for r in inbox.store_batch(
            [
                message(sid, "P1", patient="p"),
                message(sid, "P2", patient="p"),
                message(sid, "Q1", patient="q"),
                message(sid, "P3", patient="p"),
                message(sid, "N1", patient=None),
            ]
        )
    ]
    first = inbox.claim("w1", limit=2)
    assert [e.control_id for e in first] == ["P1", "P2"]
    second = inbox.claim("w2", limit=10)
    # P3 waits: earlier rows of its patient are leased to w1 and not done yet.
    assert [e.control_id for e in second] == ["Q1", "N1"]
    assert inbox.claim("w3") == []
    for e in first:
        assert inbox.finish(e.id, "w1", "mapped")
    third = inbox.claim("w3")
    assert [e.id for e in third] == [ids[3]]


def test_a_failed_message_does_not_block_its_patient(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    inbox.store_batch([message(sid, "P1", patient="p"), message(sid, "P2", patient="p")])
    (first,) = inbox.claim("w", limit=1)
    inbox.finish(first.id, "w", "failed", "PID-7: bad date")
    assert [e.control_id for e in inbox.claim("w")] == ["P2"]


def test_expired_leases_come_back_and_a_stale_worker_cannot_finish(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    inbox.store(message(sid, "C1", patient="p"))
    (entry,) = inbox.claim("crashed", lease_seconds=0.0)
    time.sleep(0.01)
    (again,) = inbox.claim("alive")
    assert again.id == entry.id
    assert not inbox.finish(entry.id, "crashed", "mapped")
    assert inbox.finish(entry.id, "alive", "mapped")
    assert inbox.get(entry.id).state == "mapped"  # type: ignore[union-attr]


def test_retry_later_hides_the_row_for_a_while(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    inbox.store(message(sid, "C1"))
    (entry,) = inbox.claim("w")
    assert inbox.retry_later(entry.id, "w", "exchange unavailable", 60)
    assert inbox.claim("w") == []
    stored = inbox.get(entry.id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.error) == ("received", 1, "exchange unavailable")


def test_requeue_for_replay(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    results = inbox.store_batch(
        [message(sid, "F1"), message(sid, "F2"), message(sid, "R1", state="rejected")]
    )
    for e in inbox.claim("w"):
        inbox.finish(e.id, "w", "failed", "boom")
    failed_ids = [r.id for r in results[:2]]
    requeued, problems = inbox.requeue(failed=True)
    assert requeued == failed_ids
    assert problems == []
    assert inbox.counts()["received"] == 2
    for e in inbox.claim("w"):
        inbox.finish(e.id, "w", "mapped")
    ids, problems = inbox.requeue([failed_ids[0], results[2].id or 0, 999])
    assert ids == [failed_ids[0]]
    assert problems[0].endswith("the sender must resend it")
    assert problems[1] == "999: no such inbox message"


def test_concurrent_workers_process_each_row_once_and_in_patient_order(engine: Engine) -> None:
    inbox = Inbox(engine)
    sid = sender_id(engine)
    batch = [message(sid, f"C{i}", patient=f"p{i % 7}") for i in range(140)]
    ids = [r.id for r in inbox.store_batch(batch)]
    done: list[tuple[int, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            idle = 0
            while idle < 20:
                claimed = inbox.claim(name, limit=5)
                if not claimed:
                    idle += 1
                    time.sleep(0.01)
                    continue
                idle = 0
                for entry in claimed:
                    with lock:
                        done.append((entry.id, entry.patient_key or ""))
                    assert inbox.finish(entry.id, name, "mapped")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(i for i, _ in done) == ids
    for patient in {p for _, p in done}:
        order = [i for i, p in done if p == patient]
        assert order == sorted(order), patient
    assert inbox.counts()["mapped"] == 140
