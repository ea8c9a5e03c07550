"""``hie serve``: the whole exchange in one command."""

from __future__ import annotations

import os

import click

from hie.app import uses_audit_journal
from hie.auth.keys import load_or_create_signing_key
from hie.processes import Supervisor
from hie.settings import load_settings
from hie.storage.sql.engine import build_engine
from hie.storage.sql.migrate import current_revision, head_revision


@click.command()
@click.option("--workers", type=int, help="HTTP worker processes (default: http.workers).")
def serve(workers: int | None) -> None:
    """Serve the whole exchange: FHIR REST and DICOMweb over HTTP, MLLP and DICOM listeners."""
    from granian import Granian
    from granian.constants import Interfaces

    settings = load_settings()
    engine = build_engine(settings.database.url)
    try:
        current, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    if current != head:
        raise click.ClickException(
            f"the database is at revision {current}, the code needs {head}: run 'hie db upgrade'"
        )
    load_or_create_signing_key(settings.data_dir)  # once, before workers start
    click.echo(f"hie: FHIR R4 base URL {settings.fhir_base_url}")
    click.echo("hie: get a token:  export TOKEN=$(.venv/bin/hie token --scope 'system/*.cruds')")
    click.echo(
        f'hie: then:  curl -H "Authorization: Bearer $TOKEN" {settings.fhir_base_url}/Patient'
    )
    # The listeners are restarted if they die (with backoff, logged on stderr).
    listeners = Supervisor(name="hie serve")
    if uses_audit_journal(settings):
        # One drainer for the host: no request waits for a drain. The processes started
        # below inherit the setting that leaves draining to it (their threads remain the
        # fallback).
        listeners.add("audit", "drain", "--follow", env=os.environ)
        os.environ["HIE_AUDIT_DRAIN_IN_REQUESTS"] = "false"
    listeners.add("dicom")
    listeners.add("mllp")
    listeners.start()
    server = Granian(
        "hie.app:wsgi_app",
        address=settings.host,
        port=settings.http.port,
        interface=Interfaces.WSGI,
        workers=workers or settings.http.workers,
        blocking_threads=settings.http.threads,
        factory=True,
        log_access=False,
        respawn_failed_workers=True,
    )
    try:
        server.serve()
    finally:
        listeners.stop()
