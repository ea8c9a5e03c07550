"""``hie keys``: the keys that seal resident ID and phone numbers.

``hie keys rotate`` makes a new current encryption key (``--index``: a new blind-index key
too), saves the keyring, then re-encrypts every sealed value in batches with a progress
bar: resource bodies (current and history) and the master patient index. Old keys stay in
the keyring, so servers keep reading throughout (they load a key they do not know yet on
first sight); an interrupted run is simply started again. ``hie keys retire KID`` drops an
old key once nothing uses it.
"""

from __future__ import annotations

import re

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import text

from hie.app import Services, build_services
from hie.crypto import KeyringError, load_keyring
from hie.exchange.protection import SEALED_URL
from hie.settings import load_settings
from hie.storage.sql.rewrap import count_rows, rewrite_contents

_MARK = SEALED_URL.encode("ascii")
_ENVELOPE_KEY = re.compile(rb'"hie1\.([A-Za-z0-9_-]+)\.')


@click.group()
def keys() -> None:
    """Keys for protected numbers (resident ID, phone)."""


@keys.command("rotate")
@click.option("--index", "index", is_flag=True, help="Also rotate the blind-index key.")
@click.option("--batch", default=500, show_default=True, help="Rows per transaction.")
def rotate_command(index: bool, batch: int) -> None:
    """Make a new key and re-encrypt every protected number with it."""
    settings = load_settings()
    try:
        ring = load_keyring(settings.data_dir)
        if ring.path is None:
            raise KeyringError(
                "keys come from the environment: put a new key first in HIE_KEYS_ENCRYPTION"
                " (and HIE_KEYS_INDEX), then run `hie keys rewrap`"
            )
        ring.rotated(index=index).save()
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from exc
    _rewrap(batch, index)


@keys.command("rewrap")
@click.option("--index", "index", is_flag=True, help="Re-index every blind index too.")
@click.option("--batch", default=500, show_default=True, help="Rows per transaction.")
def rewrap_command(index: bool, batch: int) -> None:
    """Re-encrypt every protected number under the current keys (resumable)."""
    _rewrap(batch, index)


@keys.command("retire")
@click.argument("kid")
def retire_command(kid: str) -> None:
    """Drop an old key from the keyring (after `rotate` has finished)."""
    settings = load_settings()
    try:
        ring = load_keyring(settings.data_dir)
        ring.retired(kid).save()
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"retired key {kid}")


def _rewrap(batch: int, index: bool) -> None:
    settings = load_settings()
    services = build_services(settings)
    console = Console(stderr=True)
    protection = services.exchange.protection
    if protection is None:
        raise click.ClickException("protected numbers are not enabled")
    current = protection.cipher.current_key_id.encode("ascii")

    def transform(content: bytes) -> bytes | None:
        if _MARK not in content:
            return None
        kids = set(_ENVELOPE_KEY.findall(content))
        if not index and kids <= {current}:
            return None  # already under the current key
        return orjson.dumps(protection.seal(orjson.loads(content)))

    try:
        with Progress(
            TextColumn("re-encrypting {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("resources", total=count_rows(services.engine))
            changed = rewrite_contents(
                services.engine,
                transform,
                batch=batch,
                progress=lambda n: progress.advance(task, n),
            )
            links = 0
            ops = services.exchange.identity
            if ops is not None:
                with services.store.unit_of_work(write=False) as uow:
                    total = uow.identity.count()
                linked = progress.add_task("identity index", total=total)
                after: str | None = None
                while True:
                    with services.store.unit_of_work(write=True) as uow:
                        found = uow.identity.scan(after, batch)
                        for link in found:
                            fresh = ops.mpi.resealed(link)
                            uow.identity.put(fresh, expected_sealed=link.sealed)
                    if not found:
                        break
                    links += len(found)
                    after = found[-1].source_id
                    progress.advance(linked, len(found))
        inbox = _rewrap_inbox(services, batch)
        holders = services.card.rewrap(batch=batch)  # card holders' sealed ID and phone
        if index:
            done = services.exchange.reindex(None, batch=batch)
            console.print(f"reindexed {done} resources")
    finally:
        services.close()
    click.echo(
        f"re-encrypted {changed} resource versions, {links} index records,"
        f" {inbox} HL7 inbox messages and {holders} card holders"
    )


def _rewrap_inbox(services: Services, batch: int) -> int:
    """The HL7 inbox's sealed raw messages, under the current key (compare-and-set)."""
    sealer = services.exchange.raw_sealer("hl7.inbox.raw")
    if sealer is None:
        return 0
    changed, after = 0, 0
    while True:
        with services.engine.begin() as conn:
            rows = conn.execute(
                text("SELECT id, raw FROM hl7_inbox WHERE id > :after ORDER BY id LIMIT :n"),
                {"after": after, "n": batch},
            ).all()
            for row_id, raw in rows:
                stored = bytes(raw)
                if sealer.is_current(stored):
                    continue
                new = sealer.seal(sealer.open(stored))
                changed += conn.execute(
                    text("UPDATE hl7_inbox SET raw = :new WHERE id = :id AND raw = :old"),
                    {"new": new, "id": row_id, "old": stored},
                ).rowcount
        if not rows:
            return changed
        after = rows[-1][0]
