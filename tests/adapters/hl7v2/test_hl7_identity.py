"""HL7 ADT feeds drive the master patient index: real MLLP, real workers, real exchange."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from click.testing import CliRunner
from sqlalchemy import text

from adapters.hl7v2.config import Hl7Config
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.senders import SenderRegistry
from adapters.hl7v2.service import Hl7Service
from hie.app import Services
from hie.cli import main
from hie.context import RequestContext
from hie.crypto import load_keyring
from hie.fhir.identifiers import RESIDENT_ID_SYSTEM
from hie.schema import all_tables
from tests.adapters.hl7v2.hl7_support import add_sender, mllp_exchange, msa, resident_id, run

SYS = RequestContext.system()
RID = resident_id("51070319800101123")


def adt(event: str, facility: str, control: str, pid: str, extra: str = "") -> bytes:
    msh = f"MSH|^~\\&|HIS|{facility}|HIE|MY|20261128080000||ADT^{event}|{control}|P|2.5|||||CHN|UNICODE UTF-8"
    evn = f"EVN|{event}|20261128080000"
    segments = [msh, evn, pid, "PV1|1|O"] if event != "A40" else [msh, evn, pid, extra]
    return "\r".join(segments).encode("utf-8") + b"\r"


def pid(mrn: str, name: str, birth: str, sex: str, rid: str | None = None, phone: str = "") -> str:
    ids = f"{mrn}^^^H^MR" + (f"~{rid}^^^^NNCHN" if rid else "")
    return f"PID|1||{ids}||{name}||{birth}|{sex}|||临园路12号^^绵阳^^^^^涪城区||{phone}"


def feed(services: Services, messages: list[bytes]) -> list[bytes]:
    async def scenario() -> list[bytes]:
        svc = Hl7Service(
            services.engine,
            services.exchange,
            Hl7Config(port=0, workers=1),
            run_workers=True,
            raw_cipher=services.exchange.raw_sealer("hl7.inbox.raw"),
        )
        await svc.start()
        try:
            acks = await asyncio.to_thread(mllp_exchange, svc.port, messages)
            inbox = Inbox(services.engine)
            deadline = time.monotonic() + 30
            while inbox.counts().get("received") and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return acks
        finally:
            await svc.stop()

    return list(run(scenario()))


def source_id(services: Services, org: str, mrn: str) -> str:
    found = services.exchange.search_resources(
        SYS, "Patient", [("identifier", f"urn:hie:mrn:{org}|{mrn}")]
    )
    assert len(found) == 1, found
    return str(found[0]["id"])


def test_adt_feeds_from_two_hospitals_link_and_an_a40_merge_flows_in(services: Services) -> None:
    registry = SenderRegistry(services.engine)
    add_sender(registry, "HIS", "H1", organization="Organization/h1")
    add_sender(registry, "HIS", "H2", organization="Organization/h2")
    acks = feed(
        services,
        [
            adt("A01", "H1", "m1", pid("1001", "张^伟", "19800101", "M", RID, "13812345678")),
            adt("A04", "H2", "m2", pid("77", "张^伟", "19800101", "M", RID)),
            adt("A04", "H2", "m3", pid("78", "王^建国", "19650505", "M")),
        ],
    )
    assert [msa(a)[0] for a in acks] == ["AA", "AA", "AA"]
    a, b, dup = (
        source_id(services, "h1", "1001"),
        source_id(services, "h2", "77"),
        source_id(services, "h2", "78"),
    )
    ex = services.exchange
    enterprise = ex.enterprise_of(SYS, f"Patient/{a}")
    assert ex.enterprise_of(SYS, f"Patient/{b}") == enterprise, "same resident ID: one person"
    assert ex.enterprise_of(SYS, f"Patient/{dup}") != enterprise
    # hospital 2 finds that MRN 78 was a duplicate registration of 77 and merges it
    merge = adt("A40", "H2", "m4", pid("77", "张^伟", "19800101", "M", RID), "MRG|78^^^H^MR")
    assert [msa(x)[0] for x in feed(services, [merge])] == ["AA"]
    assert ex.enterprise_of(SYS, f"Patient/{dup}") == enterprise
    golden = ex.read(SYS, "Patient", enterprise.split("/")[1])
    statuses = {
        link["other"]["reference"]: link["extension"][0]["valueCode"]
        for link in orjson.loads(golden.content)["link"]
        if link["type"] == "seealso"
    }
    assert statuses == {
        f"Patient/{a}": "auto",
        f"Patient/{b}": "auto",
        f"Patient/{dup}": "merged",
    }
    # the resident ID number is searchable, and shown masked
    found = ex.search_resources(SYS, "Patient", [("identifier", f"{RESIDENT_ID_SYSTEM}|{RID}")])
    assert sorted(p["id"] for p in found) == sorted([a, b])
    shown = {
        i["value"] for p in found for i in p["identifier"] if i["system"] == RESIDENT_ID_SYSTEM
    }
    assert shown == {RID[:6] + "********" + RID[-4:]}
    # the inbox keeps the raw messages sealed: no resident ID or phone anywhere in the tables
    with services.engine.connect() as conn:
        raws = [bytes(r[0]) for r in conn.execute(text("SELECT raw FROM hl7_inbox"))]
        assert len(raws) == 4
        assert all(r.startswith(b"hie1.") for r in raws)
        for table in all_tables():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        data = bytes(value).decode("latin-1")
                    else:
                        data = str(value)
                    assert RID not in data, table
                    assert "13812345678" not in data, table
    # a key rotation re-seals them; the inbox still opens them
    env = {
        "HIE_DATABASE_URL": services.settings.database.url,
        "HIE_DATA_DIR": str(services.settings.data_dir),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[3] / "config"),
    }
    rotated = CliRunner().invoke(main, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert "4 HL7 inbox messages" in rotated.output
    current = load_keyring(services.settings.data_dir).encryption.current
    inbox = Inbox(services.engine, raw_cipher=services.exchange.raw_sealer("hl7.inbox.raw"))
    with services.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, raw FROM hl7_inbox")).all()
    for row_id, raw in rows:
        assert bytes(raw).startswith(f"hie1.{current}.".encode())
        entry = inbox.get(row_id)
        assert entry is not None
        assert entry.raw.startswith(b"MSH|")
