"""Every file in testdata/hl7v2/valid and batch: mapped, or refused with a precise reason.

Each file goes through ``hie hl7 import``'s path (batch splitting, intake, inbox, worker,
exchange) into a fresh inbox, with unknown senders registered on first contact. The table
records, per message of the file, the outcome and the reason an operator would read.
Microsoft's samples reuse control ids across files, so files do not share an inbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.hl7v2.ack import AckBuilder
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.intake import Intake, IntakeConfig
from adapters.hl7v2.operations import import_bytes
from adapters.hl7v2.senders import SenderDefaults, SenderRegistry
from adapters.hl7v2.worker import Worker
from terminology.conceptmaps import load_conceptmaps
from tests.adapters.hl7v2.hl7_support import FIXTURES, FakeExchange, sqlite_engine_at

MAPPED = ("mapped", "")
UNSUPPORTED = "is not supported"


def refused(code: str, reason: str) -> tuple[str, str]:
    return (code, reason)


EXPECTED: dict[str, list[tuple[str, str]]] = {
    "valid/hapi__adt_a03.hl7": [MAPPED],
    "valid/hapi__cv.04_001_chem.hl7": [
        refused("AR", "MSH-9: message type ERP^Z99 is not supported")
    ],
    "valid/hapi__example_oml_o21.hl7": [
        MAPPED,
        MAPPED,
        refused("AR", "MSH-9: message type OUL^R22 is not supported"),
        refused("AR", "MSH-9: message type OUL^R22 is not supported"),
        MAPPED,
        refused("AR", "MSH-9: message type OUL^R22 is not supported"),
        MAPPED,
        refused("AR", "MSH-9: message type OUL^R22 is not supported"),
        refused("AR", "MSH-9: message type ORL^O34 is not supported"),
        refused("CE", "PID-3: patient identifier list is required"),
        refused("AR", "MSH-10: message control id is required"),
        refused("AR", "MSH-10: message control id is required"),
        MAPPED,
    ],
    "valid/hapi__messages_txt_0_ORU_R01_v22.hl7": [
        refused("CE", "MSH-7: date/time of message: '1994050216163360' is not an HL7 date/time")
    ],
    "valid/hapi__messages_txt_13_ORM_O01_v22.hl7": [MAPPED],
    "valid/hapi__omd_o03.hl7": [refused("CR", "MSH-9: message type OMD^O03 is not supported")],
    "valid/hapi__segmentfinder_a24_custom_delimiters.hl7": [
        refused("CR", "MSH-9.2: trigger event ADT^A24 is not supported")
    ],
    "valid/hl7apy__OML_O33_multi_groups_v25.hl7": [
        refused("AR", "MSH-9.2: trigger event OML^O33 is not supported")
    ],
    "valid/hl7apy__RSP_K22_pdq_v25.hl7": [refused("AR", "MSH-9: message type RSP^K22")],
    "valid/hl7apy__RSP_K22_v27_truncation_char.hl7": [refused("AR", "MSH-9: message type RSP^K22")],
    "valid/msconv__ADT-A01-01.hl7": [MAPPED],
    "valid/msconv__ADT-A01-02.hl7": [MAPPED],
    "valid/msconv__ADT-A02-01.hl7": [MAPPED],
    "valid/msconv__ADT-A03-01.hl7": [MAPPED],
    "valid/msconv__ADT-A03-02.hl7": [MAPPED],
    "valid/msconv__ADT-A04-01.hl7": [MAPPED],
    "valid/msconv__ADT-A08-01.hl7": [MAPPED],
    "valid/msconv__ADT-A08-02.hl7": [MAPPED],
    "valid/msconv__ADT-A11-01.hl7": [MAPPED],
    "valid/msconv__ADT-A11-02.hl7": [MAPPED],
    "valid/msconv__ADT-A13-01.hl7": [MAPPED],
    "valid/msconv__ADT-A28-01.hl7": [MAPPED],
    "valid/msconv__ADT-A31-01.hl7": [MAPPED],
    "valid/msconv__ADT-A31-02.hl7": [MAPPED],
    "valid/msconv__ADT-A40-01.hl7": [MAPPED],
    "valid/msconv__ADT-A40-02.hl7": [MAPPED],
    "valid/msconv__ADT-A47-01.hl7": [refused("AR", "MSH-9.2: trigger event ADT^A47")],
    "valid/msconv__ADT-A60-01.hl7": [refused("AR", "MSH-9.2: trigger event ADT^A60")],
    "valid/msconv__ADT01-23.hl7": [MAPPED],
    "valid/msconv__ADT01-28.hl7": [MAPPED],
    "valid/msconv__ADT04-23.hl7": [MAPPED],
    "valid/msconv__ADT04-251.hl7": [MAPPED],
    "valid/msconv__ADT04-28.hl7": [MAPPED],
    "valid/msconv__BAR-P01-01.hl7": [refused("AR", "MSH-9: message type BAR^P01")],
    "valid/msconv__DFT-P03-01.hl7": [refused("AR", "MSH-9: message type DFT^P03")],
    "valid/msconv__IZ_1_1.1_Admin_Child_Max_Message.hl7": [MAPPED],
    "valid/msconv__LAB-ORM-1.hl7": [MAPPED],
    "valid/msconv__LAB-ORU-1.hl7": [MAPPED],
    "valid/msconv__LAB-ORU-2.hl7": [MAPPED],
    "valid/msconv__LRI_2.0-NG_CBC_Typ_Message.hl7": [MAPPED],
    # GT1 and ORC are fused in the source file ("Walmart^LORC|NW|..."): no ORC segment.
    "valid/msconv__MDHHS-OML-O21-1.hl7": [refused("CE", "ORC: required segment ORC is missing")],
    "valid/msconv__MDM-T01-01.hl7": [refused("AR", "MSH-9.2: trigger event MDM^T01")],
    "valid/msconv__MDM-T02-01.hl7": [MAPPED],
    "valid/msconv__MDM-T02-03.hl7": [MAPPED],
    "valid/msconv__OML-O21-01.hl7": [MAPPED],
    "valid/msconv__OML-O21-02.hl7": [MAPPED],
    "valid/msconv__OML-O21-03.hl7": [MAPPED],
    "valid/msconv__ORM-O01-01.hl7": [MAPPED],
    "valid/msconv__ORM-O01-02.hl7": [MAPPED],
    "valid/msconv__ORM-O01-03.hl7": [MAPPED],
    # An ED OBX right after ORC, without OBX-3.
    "valid/msconv__ORU-R01-01.hl7": [refused("CE", "OBX(2)-3: observation identifier is required")],
    "valid/msconv__ORU-R01-RMGEAD.hl7": [MAPPED],
    "valid/msconv__OUL-R22-01.hl7": [refused("CR", "MSH-9: message type OUL^R22")],
    "valid/msconv__PC1-Problem-Add-v2.3.1.hl7": [refused("AR", "MSH-9: message type PPR^PC1")],
    "valid/msconv__RDE-O11-01.hl7": [refused("AR", "MSH-9: message type RDE^O11")],
    "valid/msconv__REF-I12-01.hl7": [refused("AR", "MSH-9: message type REF^I12")],
    "valid/msconv__SIU-S12-01.hl7": [MAPPED],
    "valid/msconv__SIU-S12-02.hl7": [MAPPED],
    "valid/msconv__SIU-S14-01.hl7": [MAPPED],
    "valid/msconv__SIU-S15-01.hl7": [MAPPED],
    "valid/msconv__VXU-V04-01.hl7": [MAPPED],
    "valid/msconv__VXU.hl7": [MAPPED],
    # python-hl7's field/component/repetition sample: a PID of placeholders, no OBR.
    "valid/pyhl7__rep_sample_hl7.hl7": [refused("AE", "OBR: required segment OBR is missing")],
    "valid/pyhl7__sample_hl7.hl7": [
        refused("AE", "PID-7: date/time of birth: '196203520' is not an HL7 date/time")
    ],
    "valid/pyhl7__sample_msh.hl7": [MAPPED],
    "batch/pyhl7__sample_batch.hl7": [MAPPED],
    "batch/pyhl7__sample_batch1.hl7": [MAPPED, MAPPED],
    "batch/pyhl7__sample_batch2.hl7": [MAPPED, MAPPED],
    # The second batch of the file repeats the first message (same control id and bytes).
    "batch/pyhl7__sample_file1.hl7": [
        MAPPED,
        MAPPED,
        ("duplicate", "duplicate of inbox message 1; not processed again"),
    ],
}

MAPS = load_conceptmaps()


def test_the_table_covers_every_file() -> None:
    files = {
        f"{p.parent.name}/{p.name}"
        for folder in ("valid", "batch")
        for p in (FIXTURES / folder).glob("*.hl7")
    }
    assert set(EXPECTED) == files
    assert sum(1 for f in files if f.startswith("valid/")) == 65


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_file_is_mapped_or_refused_with_its_reason(name: str, tmp_path: Path) -> None:
    engine = sqlite_engine_at(tmp_path / "corpus.db")
    try:
        registry, inbox, exchange = SenderRegistry(engine), Inbox(engine), FakeExchange()
        defaults = SenderDefaults("Organization/hospital", "UTF-8", "+08:00")
        intake = Intake(registry, AckBuilder(), IntakeConfig(True, defaults))
        worker = Worker(inbox, registry, exchange, maps=MAPS)
        report = import_bytes((FIXTURES / name).read_bytes(), name, intake, inbox)
        worker.drain()
        assert report.problems == []
        outcomes = []
        for imported in report.messages:
            if imported.outcome == "duplicate":
                outcomes.append(("duplicate", imported.reason))
                continue
            assert imported.inbox_id is not None
            entry = inbox.get(imported.inbox_id)
            assert entry is not None
            if entry.state == "rejected":
                outcomes.append((entry.ack_code, entry.error or ""))
            else:
                outcomes.append((entry.state, entry.error or ""))
        expected = EXPECTED[name]
        assert [o[0] for o in outcomes] == [e[0] for e in expected]
        for (_, reason), (_, wanted) in zip(outcomes, expected, strict=True):
            assert reason.startswith(wanted), f"{reason!r} does not start with {wanted!r}"
        mapped = sum(1 for o in outcomes if o[0] == "mapped")
        assert len(exchange.calls) == mapped
        if mapped:
            assert exchange.all("Provenance")
            assert exchange.all("Patient")
    finally:
        engine.dispose()
