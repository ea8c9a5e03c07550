"""``hie search``: maintenance of the search index."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hie.app import build_services
from hie.errors import FhirError
from hie.settings import load_settings


@click.group()
def search() -> None:
    """FHIR search index."""


@search.command("reindex")
@click.option("--type", "resource_type", help="Only this resource type (default: every type).")
@click.option("--batch", default=500, show_default=True, help="Resources per transaction.")
def reindex_command(resource_type: str | None, batch: int) -> None:
    """Rebuild the search index from the stored resources (after the definitions change)."""
    settings = load_settings()
    services = build_services(settings)
    console = Console(stderr=True)
    try:
        with Progress(
            TextColumn("reindexing {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(resource_type or "every type", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            done = services.exchange.reindex(resource_type, batch=batch, progress=advance)
    except FhirError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        services.close()
    console.print(f"reindexed {done} resources", soft_wrap=True)
