"""Tamper evidence and fail-closed audit, with real tampering and real failures."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hie.app import Services, build_services, create_app
from hie.cli import main
from hie.context import RequestContext, Scopes
from hie.settings import Settings
from hie.storage.ports import chain_hash
from tests.support import Api

Tamper = Callable[[sa.Connection], None]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings().replace(
        database__url=db_url, data__dir=str(tmp_path / "var"), audit__checkpoint_every=5
    )


def env(settings: Settings) -> dict[str, str]:
    return {
        "HIE_DATABASE_URL": settings.database.url,
        "HIE_DATA_DIR": settings.data.dir,
        "HIE_AUDIT_DATABASE_URL": settings.audit.database_url,
        # The same signing interval as the server: verify chains journalled records first.
        "HIE_AUDIT_CHECKPOINT_EVERY": str(settings.audit.checkpoint_every),
        "HIE_CONFIG_DIR": str(Path(__file__).parents[3] / "config"),
    }


def verify(settings: Settings) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "verify"], env=env(settings))
    return result.exit_code, result.output


@pytest.fixture
def trail(services: Services) -> Services:
    """Twelve audited accesses: two signed checkpoints (at 5 and 10) and two records beyond."""
    ctx = RequestContext.system()
    pid = services.exchange.create(ctx, "Patient", {"resourceType": "Patient"}).stored.id
    for _ in range(11):
        services.exchange.read(ctx, "Patient", pid)
    services.audit.drain()  # the reads' records out of the journal into the chain
    return services


def _edit(conn: sa.Connection) -> None:
    conn.execute(
        sa.text("UPDATE audit_event SET content = :c WHERE seq = 3"), {"c": b'{"edited":true}'}
    )


def _delete(conn: sa.Connection) -> None:
    conn.execute(sa.text("DELETE FROM audit_event WHERE seq = 3"))


def _reorder(conn: sa.Connection) -> None:
    for old, new in ((2, -2), (3, 2), (-2, 3)):
        conn.execute(sa.text(f"UPDATE audit_event SET seq = {new} WHERE seq = {old}"))


def _rewrite(conn: sa.Connection) -> None:
    """Edit record 3 and recompute every hash after it: only the checkpoint can tell."""
    rows = conn.execute(
        sa.text("SELECT seq, recorded_us, content, prev_hash FROM audit_event ORDER BY seq")
    ).all()
    prev = bytes(rows[0][3])
    for seq, us, content, _ in rows:
        body = b'{"rewritten":true}' if seq == 3 else bytes(content)
        digest = chain_hash(prev, seq, us, body)
        conn.execute(
            sa.text(
                "UPDATE audit_event SET content = :c, prev_hash = :p, hash = :h WHERE seq = :s"
            ),
            {"c": body, "p": prev, "h": digest, "s": seq},
        )
        prev = digest


def _cut_tail(conn: sa.Connection) -> None:
    conn.execute(sa.text("DELETE FROM audit_event WHERE seq >= 9"))


@pytest.mark.parametrize(
    ("tamper", "bad", "says"),
    [
        (_edit, 3, "altered"),
        (_delete, 4, "missing"),
        (_reorder, 2, ""),
        (_rewrite, 1, "rewritten between records 1 and 5"),
        (_cut_tail, 9, "records 9 to 10 (signed) are missing"),
    ],
    ids=["edit", "delete", "reorder", "rewrite", "cut-tail"],
)
def test_verify_names_the_first_bad_record(
    trail: Services, settings: Settings, tamper: Tamper, bad: int, says: str
) -> None:
    code, output = verify(settings)
    assert code == 0, output
    assert "ok: 12 records, 2 signed checkpoints" in output
    with trail.audit_log.engine.begin() as conn:
        tamper(conn)
    code, output = verify(settings)
    assert code == 1
    assert f"BAD: record {bad}:" in output
    assert says in output


def test_a_forged_checkpoint_signature_is_caught(trail: Services, settings: Settings) -> None:
    with trail.audit_log.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_checkpoint SET signature = :s"), {"s": bytes(64)})
    code, output = verify(settings)
    assert code == 1
    assert "bad signature" in output


def test_fail_closed_reads_and_writes_are_refused_without_an_audit_table(
    services: Services, token: str
) -> None:
    api = Api(create_app(services=services).test_client(), token)
    pid = api.post("Patient", {"resourceType": "Patient"}).get_json()["id"]
    assert api.get(f"Patient/{pid}").status_code == 200
    with services.audit_log.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_event RENAME TO audit_event_gone"))
    answered = 0
    try:
        # Reads journal their records; once draining into the chain has failed for
        # audit.stale_after (2 s) every access is refused.
        deadline = time.monotonic() + 30
        while (read := api.get(f"Patient/{pid}")).status_code == 200:
            answered += 1
            assert time.monotonic() < deadline, "reads were never refused"
            time.sleep(0.01)
        assert read.status_code == 503
        assert read.get_json()["resourceType"] == "OperationOutcome"
        assert pid not in read.get_data(as_text=True)
        assert api.get("Patient?gender=male").status_code == 503
        write = api.post("Patient", {"resourceType": "Patient", "gender": "male"})
        assert write.status_code == 503
        assert api.get(f"Patient/{pid}", token="bad").status_code == 503
    finally:
        with services.audit_log.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit_event_gone RENAME TO audit_event"))
    # The refused write left nothing behind.
    assert api.get("Patient?gender=male").get_json().get("entry") is None
    # Every read answered while the chain was out of reach was chained once it was back.
    services.audit.drain()
    with services.audit_log.engine.connect() as conn:
        granted = conn.execute(
            sa.text("SELECT count(*) FROM audit_event WHERE subtype = 'read' AND outcome = '0'")
        ).scalar()
    assert granted == 1 + answered


def test_fail_closed_a_read_whose_record_cannot_be_journalled_is_refused(
    services: Services, settings: Settings, token: str
) -> None:
    api = Api(create_app(services=services).test_client(), token)
    pid = api.post("Patient", {"resourceType": "Patient"}).get_json()["id"]
    assert api.get(f"Patient/{pid}").status_code == 200
    journals = Path(settings.data.dir) / "audit-journal"
    shutil.rmtree(journals)  # the open journal is deleted and no new one can be made
    read = api.get(f"Patient/{pid}")
    assert read.status_code == 503
    assert pid not in read.get_data(as_text=True)
    journals.mkdir()
    assert api.get(f"Patient/{pid}").status_code == 200


_CRASH = """
import os, sys
from hie.app import build_services
from hie.context import RequestContext, Scopes
from hie.settings import Settings
settings = Settings().replace(
    database__url=sys.argv[1], data__dir=sys.argv[2], audit__drain_interval=3600.0
)
services = build_services(settings)
services.exchange.read(RequestContext.system(actor="before-the-crash"), "Patient", sys.argv[3])
print(os.getpid(), flush=True)
os._exit(9)  # no close, no drain: the record is only in this process's journal
"""


def test_a_crash_loses_no_record_of_an_answered_read(
    services: Services, settings: Settings
) -> None:
    ctx = RequestContext.system()
    pid = services.exchange.create(ctx, "Patient", {"resourceType": "Patient"}).stored.id
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASH, settings.database.url, settings.data.dir, pid],
        cwd=Path(__file__).parents[3],
        capture_output=True,
        text=True,
    )
    assert crashed.returncode == 9, crashed.stderr
    trail = services.exchange.audit_trail
    assert trail is not None
    auditor = RequestContext(actor="auditor", scopes=Scopes("system/AuditEvent.rs"))
    found = services.exchange.search(auditor, "AuditEvent", [("agent", "before-the-crash")])
    assert [orjson.loads(e.content)["subtype"][0]["code"] for e in found.entries] == ["read"]
    # The dead process's journal, drained, is gone; the chain is whole.
    child = crashed.stdout.strip()
    assert not list((Path(settings.data.dir) / "audit-journal").glob(f"*-{child}-*"))
    code, output = verify(settings)
    assert code == 0, output


def test_audit_in_a_database_of_its_own(tmp_path: Path, settings: Settings) -> None:
    apart = settings.replace(audit__database_url=f"sqlite:///{tmp_path}/audit.db")
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env(apart))
    assert result.exit_code == 0, result.output
    assert "audit tables ready" in result.output
    services = build_services(apart)
    try:
        ctx = RequestContext.system()
        pid = services.exchange.create(ctx, "Patient", {"resourceType": "Patient"}).stored.id
        services.exchange.read(ctx, "Patient", pid)
        services.audit.drain()
        with services.audit_log.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar() == 2
        with services.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar() == 0
    finally:
        services.close()
    code, output = verify(apart)
    assert code == 0, output
    assert "ok: 2 records" in output


def test_break_glass_command_lists_flagged_accesses_with_reasons(
    services: Services, settings: Settings
) -> None:
    ctx = RequestContext.system()
    pid = services.exchange.create(ctx, "Patient", {"resourceType": "Patient"}).stored.id
    btg = RequestContext(
        actor="er-doctor",
        organization="Organization/er",
        purpose="BTG",
        reason="unconscious, no consent on file",
        scopes=ctx.scopes,
    )
    services.exchange.read(btg, "Patient", pid)
    services.exchange.read(ctx, "Patient", pid)
    result = CliRunner().invoke(main, ["audit", "break-glass"], env=env(settings))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "reason: unconscious, no consent on file" in lines[0]
    assert f"Patient/{pid}" in lines[0]
    assert "Organization/er" in lines[0]
