"""``hie card``: card service administration (bulk import).

The ``hie`` group puts its environment in ``click.Context.obj``; its ``services.card``
is the assembled :class:`card.service.CardService` (the card package must not import
``hie.app``, which pulls in the FHIR models).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from card.importing import CardImporter, read_csv, write_report
from card.service import CardService


def _service() -> CardService:
    obj = click.get_current_context().obj
    if obj is None:
        raise click.UsageError("run this as 'hie card ...'")
    service: CardService = obj.services.card
    return service


def _in_progress(label: str, total: int, work: Callable[[Callable[[int], None]], int]) -> int:
    """Run a resumable pass over card holders with a progress bar; close the services."""
    try:
        with Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as progress:
            task = progress.add_task("people", total=total or 1)
            return work(lambda n: progress.advance(task, n))
    finally:
        click.get_current_context().obj.services.close()


@click.group("card")
def card() -> None:
    """The Mianzhou Pass card service."""


@card.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where rejected rows go (default: FILE.rejected.csv).",
)
@click.option("--batch", default=2000, show_default=True, help="Rows per transaction.")
@click.option(
    "--enroll/--no-enroll",
    default=False,
    show_default=True,
    help="Also write each new holder's card-source and enterprise Patient (the master "
    "patient index) as the cards load; without it, run 'hie card enroll' afterwards.",
)
def import_cards(path: Path, report: Path | None, batch: int, enroll: bool) -> None:
    """Import cards from a CSV file (idempotent; rejected rows go to a report file)."""
    console = Console(stderr=True)
    report_path = report or path.with_name(path.name + ".rejected.csv")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        total = max(sum(1 for _ in handle) - 1, 0)
    service = _service()
    importer = CardImporter(service, enroll=enroll)
    started = time.perf_counter()
    try:
        with (
            Progress(
                TextColumn("importing cards"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as progress,
            path.open(encoding="utf-8-sig", newline="") as handle,
        ):
            task = progress.add_task("cards", total=total or 1)
            importer.load(
                read_csv(handle), batch=batch, progress=lambda n: progress.advance(task, n)
            )
    finally:
        click.get_current_context().obj.services.close()
    elapsed = time.perf_counter() - started
    result = importer.report
    write_report(report_path, result)
    console.print(
        f"read {result.read}, imported {result.imported}, already present {result.skipped}, "
        f"rejected {result.rejected} (see {report_path}); "
        f"{result.read / elapsed if elapsed else 0:.0f} rows/s",
        soft_wrap=True,
    )
    if enroll:
        console.print(f"{result.enrolled} card holders enrolled in the master patient index")
    else:
        console.print("enrol the new card holders in the master patient index: hie card enroll")
    if result.rejected:
        raise SystemExit(1)


@card.command("rewrap")
@click.option("--batch", default=1000, show_default=True, help="People per transaction.")
def rewrap_cards(batch: int) -> None:
    """Re-seal card holders' resident IDs and phones under the current keys (resumable).

    Run after ``hie keys rotate``; old keys keep decrypting until then.
    """
    service = _service()
    with service.registry.transaction(write=False) as tx:
        total = tx.count_people()
    changed = _in_progress(
        "re-encrypting card holders",
        total,
        lambda advance: service.rewrap(batch=batch, progress=advance),
    )
    Console(stderr=True).print(f"{changed} of {total} card holders re-encrypted")


@card.command("enroll")
@click.option("--batch", default=2000, show_default=True, help="People per transaction.")
def enroll_cards(batch: int) -> None:
    """Enrol card holders who have no Patient yet in the master patient index (resumable)."""
    service = _service()
    with service.registry.transaction(write=False) as tx:
        total = tx.count_unenrolled()
    done = _in_progress(
        "enrolling card holders",
        total,
        lambda advance: service.enroll_pending(
            actor="hie-card-enroll", batch=batch, progress=advance
        ),
    )
    Console(stderr=True).print(f"{done} card holders enrolled")
