"""Drained journals leave no rows behind: once a journal's writer has exited and every
record in it is chained, its file is deleted and its offset in ``audit_journal`` with it,
while live journals keep theirs (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from hie.app import Services
from hie.audit.chain import verify
from hie.audit.event import Access, AuditBuilder
from hie.audit.journal import Journal, JournalDrain
from hie.auth.keys import load_or_create_signing_key
from hie.context import RequestContext, Scopes
from hie.storage.ports import AuditRecord

BUILDER = AuditBuilder(clock=lambda: datetime.now(UTC))
CTX = RequestContext(actor="reader", scopes=Scopes("system/*.rs"), source="10.0.0.1")


def reads(tag: str, n: int) -> list[AuditRecord]:
    return [
        BUILDER.build(CTX, Access(subtype="read", entities=(f"Observation/{tag}-{i}",)))
        for i in range(n)
    ]


def test_drained_journals_of_ended_processes_are_forgotten(
    services: Services, tmp_path: Path
) -> None:
    log = services.audit_log
    directory = tmp_path / "journals"
    ended, live = Journal(directory), Journal(directory)
    ended.write(reads("ended", 3))
    live.write(reads("live", 2))
    ended.close()  # its writer is gone: the drainer may delete it once chained
    drain = JournalDrain(log, directory)

    def offsets() -> dict[str, int]:
        with log.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name, drained FROM audit_journal"))
            return {str(name): int(drained) for name, drained in rows}

    def chained(tag: str) -> int:
        with log.engine.connect() as conn:
            sql = "SELECT count(*) FROM audit_ref WHERE kind = 'e' AND ref LIKE :ref"
            return int(conn.execute(sa.text(sql), {"ref": f"Observation/{tag}-%"}).scalar_one())

    drain.drain()
    files = sorted(p.name for p in directory.glob("*.journal"))
    assert len(files) == 1  # the live one
    assert list(offsets()) == files
    assert offsets()[files[0]] == (directory / files[0]).stat().st_size
    assert chained("ended") == 3
    assert chained("live") == 2

    live.write(reads("live", 4))  # more on the live journal: chained once, from its offset
    drain.drain()
    assert chained("live") == 6
    live.close()
    drain.drain()
    assert list(directory.glob("*.journal")) == []
    assert offsets() == {}
    assert chained("ended") == 3
    assert chained("live") == 6
    public = load_or_create_signing_key(services.settings.data_dir).public_key()
    verdict = verify(log.links(), log.checkpoints(), public)
    assert verdict.ok, verdict
