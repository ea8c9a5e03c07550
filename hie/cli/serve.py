"""``hie serve``: the whole exchange in one command."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys

import click

from hie.auth.keys import load_or_create_signing_key
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
    listeners = [_spawn("dicom"), _spawn("mllp")]
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
        for child in listeners:
            child.terminate()
        for child in listeners:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()


def _die_with_parent() -> None:
    # A listener must not outlive `hie serve`, even if it is killed outright.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(command: str) -> subprocess.Popen[bytes]:
    """Run `hie <command>` (a protocol listener) as a child process."""
    return subprocess.Popen([sys.executable, "-m", "hie", command], preexec_fn=_die_with_parent)
