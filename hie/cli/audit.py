"""``hie audit``: verify the tamper-evident trail, review break-glass accesses."""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import datetime

import click
import orjson

from hie.app import build_audit_log, journal_dir
from hie.audit.chain import CheckpointSigner, verify
from hie.audit.event import event_of
from hie.audit.journal import JournalDrain
from hie.auth.keys import load_or_create_signing_key
from hie.exchange.auditing import AuditTrail
from hie.fhir.canonical import parse_instant
from hie.settings import load_settings


@click.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
def verify_command() -> None:
    """Walk the hash chain and check the signed checkpoints.

    Exits 1 naming the first bad record if any record was edited, deleted or moved.
    """
    settings = load_settings()
    key = load_or_create_signing_key(settings.data_dir)
    public = key.public_key()
    log, _ = build_audit_log(settings, CheckpointSigner(key))
    try:
        # The records this host's processes have journalled but not yet chained first.
        JournalDrain(log, journal_dir(settings)).drain()
        started = time.perf_counter()
        verdict = verify(log.links(), log.checkpoints(), public)
        elapsed = time.perf_counter() - started
    finally:
        log.close()
    rate = verdict.records / elapsed if elapsed > 0 else 0.0
    if not verdict.ok:
        click.echo(
            f"BAD: record {verdict.bad_seq}: {verdict.problem} "
            f"({verdict.records} records verified before it)",
            err=True,
        )
        sys.exit(1)
    click.echo(
        f"ok: {verdict.records} records, {verdict.checkpoints} signed checkpoints "
        f"({elapsed:.2f} s, {rate:,.0f} records/s)"
    )


@audit.command("drain")
@click.option("--follow", is_flag=True, help="Keep draining every audit.drain_interval.")
def drain_command(follow: bool) -> None:
    """Chain the records this host's processes have journalled.

    ``hie serve`` runs ``hie audit drain --follow`` so that no request waits for a drain.
    """
    settings = load_settings()
    log, _ = build_audit_log(
        settings, CheckpointSigner(load_or_create_signing_key(settings.data_dir))
    )
    drain = JournalDrain(log, journal_dir(settings))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    failing = False
    try:
        while True:
            try:
                drain.drain()
                if failing:
                    click.echo("hie audit drain: draining works again", err=True)
                failing = False
            except Exception as exc:
                if not follow:
                    raise click.ClickException(f"draining the audit journal failed: {exc}") from exc
                if not failing:  # once per failure; requests are refused meanwhile
                    click.echo(f"hie audit drain: draining failed: {exc}", err=True)
                failing = True
            if not follow or stop.wait(settings.audit.drain_interval):
                break
    finally:
        log.close()


@audit.command("break-glass")
@click.option("--since", help="Only accesses at or after this instant (ISO 8601).")
@click.option("--limit", default=100, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One AuditEvent per line.")
def break_glass_command(since: str | None, limit: int, as_json: bool) -> None:
    """List break-glass accesses (purpose BTG) with their reasons, for review."""
    settings = load_settings()
    key = load_or_create_signing_key(settings.data_dir)
    log, _ = build_audit_log(settings, CheckpointSigner(key))
    start: datetime | None = parse_instant(since) if since else None
    try:
        trail = AuditTrail(
            log,
            default_count=limit,
            max_count=limit,
            organization_name=_no_name,
            before_read=JournalDrain(log, journal_dir(settings)).drain,
        )
        rows = trail.break_glass(since=start, count=limit)
    finally:
        log.close()
    if not rows:
        click.echo("no break-glass accesses")
        return
    for row in rows:
        event = event_of(row.content, row.recorded)
        if as_json:
            click.echo(orjson.dumps({"id": str(row.seq), **event}).decode())
            continue
        reason = next((p.get("text") for p in event.get("purposeOfEvent", [])), None)
        who = [
            a["who"].get("reference") or a["who"].get("identifier", {}).get("value", "")
            for a in event["agent"]
            if a.get("requestor") or a["who"].get("reference", "").startswith("Organization/")
        ]
        what = [e["what"]["reference"] for e in event.get("entity", []) if "what" in e]
        click.echo(
            f"{row.seq}\t{event['recorded']}\t{event['subtype'][0]['code']}\t"
            f"outcome {event['outcome']}\t{' '.join(who)}\t{' '.join(dict.fromkeys(what))}\t"
            f"reason: {reason or '(none)'}"
        )


def _no_name(reference: str) -> str | None:
    return None
