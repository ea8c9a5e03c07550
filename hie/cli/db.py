"""``hie db``: database migrations."""

from __future__ import annotations

import click

from hie.settings import load_settings
from hie.storage.sql.audit import metadata as audit_metadata
from hie.storage.sql.engine import build_engine
from hie.storage.sql.migrate import current_revision, head_revision, upgrade


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
def upgrade_command(revision: str) -> None:
    """Apply the database migrations (creates the SQLite file if needed)."""
    settings = load_settings()
    engine = build_engine(settings.database.url, synchronous=settings.database.sqlite_synchronous)
    try:
        upgrade(engine, revision)
        click.echo(
            f"database at revision {current_revision(engine)} ({engine.url.render_as_string()})"
        )
    finally:
        engine.dispose()
    url = settings.audit.database_url
    if url and url != settings.database.url:
        # The audit trail kept apart: its tables only, created where missing.
        audit_engine = build_engine(url, synchronous=settings.database.sqlite_synchronous)
        try:
            audit_metadata.create_all(audit_engine)
            click.echo(f"audit tables ready ({audit_engine.url.render_as_string()})")
        finally:
            audit_engine.dispose()


@db.command("current")
def current_command() -> None:
    """Show the database's revision and the code's head revision."""
    settings = load_settings()
    engine = build_engine(settings.database.url)
    try:
        click.echo(f"database: {current_revision(engine)}  code: {head_revision()}")
    finally:
        engine.dispose()
