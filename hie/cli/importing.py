"""``hie import``: bulk-load Bundle JSON and NDJSON files through the exchange."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from hie.app import build_services
from hie.context import RequestContext
from hie.importer import Importer, collect_files
from hie.settings import load_settings


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--org", "organization", help="Organisation that owns the imported records.")
@click.option("--chunk", default=500, show_default=True, help="NDJSON resources per transaction.")
def import_command(paths: tuple[Path, ...], organization: str | None, chunk: int) -> None:
    """Load Bundle JSON files and NDJSON files or folders of them."""
    settings = load_settings()
    services = build_services(settings)
    console = Console(stderr=True)
    ctx = RequestContext.system(actor="hie-import", organization=organization)
    files = collect_files(paths)
    importer = Importer(services.exchange, ctx, chunk=chunk)
    total = sum(f.stat().st_size for f in files)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("importing", total=total or 1)
            for path in files:
                progress.update(task, description=f"importing {path.name}")
                importer.load(path)
                progress.advance(task, path.stat().st_size)
    finally:
        services.close()
    report = importer.report
    summary = (
        f"files: {report.files_ok} loaded, {report.files_failed} failed; "
        f"resources: {report.created} created, {report.updated} updated or unchanged; "
        f"errors: {len(report.errors)}"
    )
    console.print(summary, soft_wrap=True)
    for error in report.errors[:50]:
        console.print(f"  {error}", soft_wrap=True)
    if len(report.errors) > 50:
        console.print(f"  ... and {len(report.errors) - 50} more")
    if report.files_failed or report.errors:
        raise SystemExit(1)
