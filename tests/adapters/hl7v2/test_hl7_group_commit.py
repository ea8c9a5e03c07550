"""Group commit: several mapped messages per exchange transaction, through the real exchange.

A group is all or nothing in the exchange, so the worker applies a failed group again
message by message: one bad message is marked failed with its reason and its neighbours
are mapped. Re-mapping stays idempotent.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from adapters.hl7v2.ack import AckBuilder
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.intake import Intake, IntakeConfig
from adapters.hl7v2.message import read_message
from adapters.hl7v2.senders import SenderDefaults, SenderRegistry
from adapters.hl7v2.to_fhir import to_bundle
from adapters.hl7v2.worker import Worker, WorkerConfig
from hie.app import Services
from hie.context import RequestContext
from terminology.conceptmaps import load_conceptmaps
from tests.adapters.hl7v2.hl7_support import add_sender

SYS = RequestContext.system()
MAPS = load_conceptmaps()


def oru(n: int, mrn: str) -> bytes:
    when = "20261128083000"
    segments = [
        f"MSH|^~\\&|LIS|MYSRMYY|HIE|MY|{when}||ORU^R01^ORU_R01|G{n:04d}|P|2.5.1|||||CHN|UNICODE UTF-8",
        f"PID|1||{mrn}^^^MYSRMYY^MR||王^小{n}||19800101|F",
        f"PV1|1|O|检验科^^^MYSRMYY||||||||||||||||V{n:04d}",
        f"OBR|1|P{n:04d}^LIS|F{n:04d}^LIS|CBC^血常规^L|||{when}|||||||||||||||{when}||HM|F",
        f"OBX|1|NM|HGB^血红蛋白^L||{130 + n}|g/L|130-175|N|||F|||{when}",
        f"OBX|2|NM|WBC^白细胞计数^L||6.{n}|10*9/L|3.5-9.5|N|||F|||{when}",
    ]
    return "\r".join(segments).encode("utf-8") + b"\r"


def total(services: Services, rtype: str, *params: tuple[str, str]) -> int:
    result = services.exchange.search(SYS, rtype, [*params, ("_summary", "count")])
    assert result.total is not None
    return result.total


def test_groups_map_every_message_and_a_bad_one_fails_alone(services: Services) -> None:
    registry = SenderRegistry(services.engine)
    sender = add_sender(registry, "LIS", "MYSRMYY", organization="Organization/mysrmyy")
    inbox = Inbox(services.engine, raw_cipher=services.exchange.raw_sealer("hl7.inbox.raw"))
    intake = Intake(
        registry, AckBuilder(), IntakeConfig(False, SenderDefaults("", "UTF-8", "+08:00"))
    )
    messages = [oru(n, f"MRN{n % 3:04d}") for n in range(7)]
    messages[3] = oru(3, "DUPLICATED")
    # Two source Patients already carry the MRN message 3 names: its conditional update
    # matches both and the exchange refuses it (412), after mapping succeeded.
    patient_put = next(
        e
        for e in to_bundle(read_message(messages[3], "UTF-8"), sender, MAPS)["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
    (name, value), *_ = parse_qsl(patient_put["request"]["url"].partition("?")[2])
    assert name == "identifier"
    system, _, mrn = value.partition("|")
    for _ in range(2):
        services.exchange.create(
            SYS,
            "Patient",
            {"resourceType": "Patient", "identifier": [{"system": system, "value": mrn}]},
        )
    ids = [intake.receive(raw, inbox, "test", "mllp")[1].id for raw in messages]
    worker = Worker(
        inbox, registry, services.exchange, maps=MAPS, config=WorkerConfig(commit_batch=4)
    )
    assert worker.drain() == 7

    entries = {i: inbox.get(i) for i in ids if i is not None}
    states = [e.state if e else None for e in entries.values()]
    assert states == ["mapped"] * 3 + ["failed"] + ["mapped"] * 3
    failed = entries[ids[3]]
    assert failed is not None
    assert failed.error is not None
    assert "more than one Patient" in failed.error
    # Every mapped message is readable by search; the failed one wrote nothing.
    for n in range(7):
        found = total(services, "DiagnosticReport", ("identifier", f"F{n:04d}"))
        assert found == (0 if n == 3 else 1), n
    assert total(services, "Observation") == 12
    assert total(services, "Provenance") == 6

    # Replaying everything (a crash after the commit, or an operator) duplicates nothing.
    requeued, problems = inbox.requeue([i for i in ids if i is not None])
    assert problems == []
    assert len(requeued) == 7
    worker.drain()
    assert total(services, "Observation") == 12
    assert total(services, "Provenance") == 6
    assert total(services, "DiagnosticReport") == 6
    assert [e.state for e in inbox.entries(["mapped", "failed"])].count("mapped") == 6


def test_results_for_an_unchanged_patient_write_no_new_patient_version(
    services: Services,
) -> None:
    """Each message has its own meta.source; the same demographics are still a no-op."""
    registry = SenderRegistry(services.engine)
    add_sender(registry, "LIS", "MYSRMYY", organization="Organization/mysrmyy")
    inbox = Inbox(services.engine, raw_cipher=services.exchange.raw_sealer("hl7.inbox.raw"))
    intake = Intake(
        registry, AckBuilder(), IntakeConfig(False, SenderDefaults("", "UTF-8", "+08:00"))
    )
    same_patient = [oru(n, "MRN0042").replace(f"小{n}".encode(), "小明".encode()) for n in range(5)]
    for raw in same_patient:
        intake.receive(raw, inbox, "test", "mllp")
    worker = Worker(
        inbox, registry, services.exchange, maps=MAPS, config=WorkerConfig(commit_batch=3)
    )
    assert worker.drain() == 5
    assert total(services, "Observation") == 10
    assert total(services, "Provenance") == 5
    sources = services.exchange.search(SYS, "Patient", [("identifier", "MRN0042")]).entries
    assert len(sources) == 1
    source = sources[0]
    history = services.exchange.history(SYS, "Patient", source.id, [])
    assert [s.version for s in history.entries] == [1], "one version for five messages"
    enterprise = services.exchange.enterprise_of(SYS, f"Patient/{source.id}")
    _, _, eid = enterprise.partition("/")
    assert [s.version for s in services.exchange.history(SYS, "Patient", eid, []).entries] == [1]
    # Every message's Provenance still names the (unchanged) Patient.
    provenances = services.exchange.search(
        SYS, "Provenance", [("target", f"Patient/{source.id}")]
    ).entries
    assert len(provenances) == 5

    # Changed demographics are a real update: a new version, re-matched in the index.
    moved = oru(9, "MRN0042").replace("小9".encode(), "小明".encode())
    moved = moved.replace(b"|19800101|F", b"|19800102|F")
    intake.receive(moved, inbox, "test", "mllp")
    assert worker.drain() == 1
    history = services.exchange.history(SYS, "Patient", source.id, [])
    assert sorted(s.version for s in history.entries) == [1, 2]
    golden = services.exchange.read(SYS, "Patient", eid)
    assert b"1980-01-02" in golden.content
