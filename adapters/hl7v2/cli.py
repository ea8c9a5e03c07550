"""Commands: ``hie hl7 ...`` (senders, errors, replay, import, status) and ``hie mllp``.

The lead attaches them to the ``hie`` group::

    from adapters.hl7v2.cli import hl7, mllp
    main.add_command(hl7)
    main.add_command(mllp)

and puts an object implementing :class:`adapters.hl7v2.ports.Hl7Environment` (settings,
engine, exchange) in ``click.Context.obj``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

import click

from adapters.hl7v2.ack import AckBuilder
from adapters.hl7v2.config import Hl7Config
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.intake import Intake, IntakeConfig
from adapters.hl7v2.operations import import_files, list_errors, replay
from adapters.hl7v2.ports import Hl7Environment
from adapters.hl7v2.senders import Sender, SenderError, SenderRegistry
from adapters.hl7v2.service import Hl7Service
from adapters.hl7v2.strict import validate_strict
from adapters.hl7v2.worker import Worker
from hie.processes import spawn_hie, stop_all
from terminology.conceptmaps import load_conceptmaps


def _env() -> Hl7Environment:
    obj = click.get_current_context().obj
    if obj is None:
        raise click.UsageError("no application environment (run through the hie command)")
    return obj  # type: ignore[no-any-return]


def _inbox(env: Hl7Environment, *, keep_connection: bool = False) -> Inbox:
    # Raw messages hold resident ID and phone numbers: sealed at rest on every path.
    return Inbox(env.engine(), keep_connection=keep_connection, raw_cipher=env.raw_cipher())


def _config(env: Hl7Environment) -> Hl7Config:
    return Hl7Config.from_settings(env.settings)


def _worker(env: Hl7Environment, inbox: Inbox, registry: SenderRegistry) -> Worker:
    config = _config(env)
    return Worker(
        inbox,
        registry,
        env.exchange(),
        name="hl7-cli",
        maps=load_conceptmaps(*config.conceptmaps),
        ack_builder=AckBuilder(config.application, config.facility),
    )


@click.group("hl7")
def hl7() -> None:
    """HL7 v2: senders, failed messages, replay and batch import."""


# -- senders --------------------------------------------------------------------------------


@hl7.group("sender")
def sender() -> None:
    """Register and list the systems allowed to send (MSH-3 application, MSH-4 facility)."""


@sender.command("add")
@click.option("--app", "application", required=True, help="MSH-3 sending application")
@click.option("--facility", required=True, help="MSH-4 sending facility")
@click.option("--org", "organization", required=True, help="Owning Organization/ID")
@click.option("--charset", default="GB18030", show_default=True, help="When MSH-18 is empty")
@click.option("--tz", "tz_offset", default="+08:00", show_default=True, help="Default UTC offset")
@click.option("--mrn-system", default=None, help="Identifier system of the local MRNs")
@click.option("--resident-id-authority", default=None, help="PID-3 authority of resident IDs")
@click.option("--strict", is_flag=True, help="Validate every message with hl7apy")
@click.option("--ack-address", default=None, help="host:port for enhanced-mode application ACKs")
def sender_add(
    application: str,
    facility: str,
    organization: str,
    charset: str,
    tz_offset: str,
    mrn_system: str | None,
    resident_id_authority: str | None,
    strict: bool,
    ack_address: str | None,
) -> None:
    """Register a sender."""
    registry = SenderRegistry(_env().engine())
    try:
        added = registry.add(
            application,
            facility,
            organization,
            charset=charset,
            tz_offset=tz_offset,
            mrn_system=mrn_system,
            resident_id_authority=resident_id_authority,
            strict=strict,
            ack_address=ack_address,
        )
    except SenderError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"registered {_describe(added)}")


@sender.command("list")
def sender_list() -> None:
    """List registered senders."""
    for s in SenderRegistry(_env().engine()).all():
        click.echo(_describe(s))


def _describe(s: Sender) -> str:
    flags = []
    if s.strict:
        flags.append("strict")
    if s.auto_registered:
        flags.append("auto-registered")
    if s.ack_address:
        flags.append(f"app-acks to {s.ack_address}")
    extra = f" ({', '.join(flags)})" if flags else ""
    return (
        f"{s.id}: {s.application}|{s.facility} -> {s.organization or '-'}"
        f", charset {s.charset}, tz {s.tz_offset}, MRN system {s.mrn_system}{extra}"
    )


# -- inbox ----------------------------------------------------------------------------------


@hl7.command("errors")
@click.option("--rejected", is_flag=True, help="Also list messages refused at intake (AE/AR)")
@click.option("--limit", default=100, show_default=True)
def errors(rejected: bool, limit: int) -> None:
    """List failed messages with their reasons."""
    entries = list_errors(_inbox(_env()), rejected=rejected, limit=limit)
    for e in entries:
        sender_label = f"{e.sending_application}|{e.sending_facility}"
        click.echo(
            f"{e.id}\t{e.state}\t{e.received_at:%Y-%m-%d %H:%M:%S}\t{sender_label}\t"
            f"{e.message_type}\t{e.control_id}\t{e.error}"
        )
    if not entries:
        click.echo("no failed messages")


@hl7.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="Replay every failed message")
@click.option("--wait/--no-wait", default=True, help="Map now, or leave it to running workers")
def replay_command(ids: tuple[int, ...], failed: bool, wait: bool) -> None:
    """Map failed messages again (for example after a code map was fixed)."""
    env = _env()
    engine = env.engine()
    inbox, registry = _inbox(env), SenderRegistry(engine)
    queued, problems = replay(inbox, ids, failed=failed)
    for problem in problems:
        click.echo(problem, err=True)
    click.echo(f"queued {len(queued)} message(s) for mapping")
    if wait and queued:
        _worker(env, inbox, registry).drain()
        _report(inbox, queued)
    if problems and not queued:
        raise SystemExit(1)


@hl7.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--map/--no-map", "map_now", default=True, help="Map now, or leave it to workers")
def import_command(files: tuple[str, ...], map_now: bool) -> None:
    """Load batch files (FHS/BHS/BTS/FTS or one message after another)."""
    env = _env()
    engine = env.engine()
    config = _config(env)
    inbox, registry = _inbox(env), SenderRegistry(engine)
    intake = Intake(
        registry,
        AckBuilder(config.application, config.facility),
        IntakeConfig(config.accept_unregistered, config.defaults, config.max_message_bytes),
        strict_validator=validate_strict,
    )
    stored: list[int] = []
    for report in import_files([Path(f) for f in files], intake, inbox):
        for problem in report.problems:
            click.echo(f"{report.source}: {problem}", err=True)
        for m in report.messages:
            click.echo(
                f"{report.source}#{m.index}\t{m.message_type}\t{m.control_id}\t{m.ack_code}"
                f"\t{m.outcome}\t{m.reason}"
            )
            if m.outcome == "stored" and m.accepted and m.inbox_id is not None:
                stored.append(m.inbox_id)
    if map_now and stored:
        _worker(env, inbox, registry).drain()
        _report(inbox, stored)


def _report(inbox: Inbox, ids: list[int]) -> None:
    for i in ids:
        entry = inbox.get(i)
        if entry is not None:
            suffix = f"\t{entry.error}" if entry.error and entry.state == "failed" else ""
            click.echo(f"{i}\t{entry.state}{suffix}")


@hl7.command("work")
def work() -> None:
    """Map received messages (hl7.workers threads) until stopped; hie mllp starts these."""
    env = _env()
    config = _config(env)
    engine = env.engine()
    inbox, registry = _inbox(env, keep_connection=True), SenderRegistry(engine)
    maps = load_conceptmaps(*config.conceptmaps)
    acks = AckBuilder(config.application, config.facility)
    exchange = env.exchange()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threads = []
    for i in range(config.workers):
        worker = Worker(
            inbox,
            registry,
            exchange,
            name=f"hl7-work-{os.getpid()}-{i}",
            maps=maps,
            ack_builder=acks,
            config=config.worker_config(),
        )
        thread = threading.Thread(target=worker.run, args=(stop,), name=worker.name)
        thread.start()
        threads.append(thread)
    stop.wait()
    for thread in threads:
        thread.join(timeout=30)
    inbox.close()


@hl7.command("status")
def status() -> None:
    """Inbox message counts by state."""
    for state, count in _inbox(_env()).counts().items():
        click.echo(f"{state}\t{count}")


# -- the listener ---------------------------------------------------------------------------


@click.command("mllp")
@click.option("--host", default=None, help="Listen address (default: settings host)")
@click.option("--port", type=int, default=None, help="Listen port (default: HIE_MLLP_PORT)")
def mllp(host: str | None, port: int | None) -> None:
    """Run the MLLP listener and the HL7 workers alone."""
    env = _env()
    config = _config(env)
    if host is not None or port is not None:
        from dataclasses import replace

        config = replace(
            config, host=host or config.host, port=config.port if port is None else port
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # raw messages hold resident ID and phone numbers: sealed at rest
    service = Hl7Service(env.engine(), env.exchange(), config, raw_cipher=env.raw_cipher())
    # Mapping is CPU-bound Python: more processes, not more threads, use more cores.
    children = [spawn_hie("hl7", "work") for _ in range(config.worker_processes)]
    try:
        asyncio.run(_serve(service))
    finally:
        stop_all(children)


async def _serve(service: Hl7Service) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await service.start()
    click.echo(f"MLLP listening on {service.config.host}:{service.port}")
    try:
        await stop.wait()
    finally:
        await service.stop()
