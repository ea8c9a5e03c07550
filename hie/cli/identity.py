"""``hie identity``: work the master patient index's review queue.

``hie identity review`` shows each possible match (the source record and the enterprise
Patient it was provisionally linked to, numbers masked) and asks: [a]ccept the link,
[r]eject it (the record gets an enterprise Patient of its own), [s]kip, [q]uit.
``--list`` only lists; ``--accept ID`` / ``--reject ID`` decide one without asking.
Decisions are a person's: the matcher never moves them again.
"""

from __future__ import annotations

import getpass
from typing import Any

import click
import orjson

from hie.app import build_services
from hie.context import RequestContext, Scopes
from hie.errors import FhirError
from hie.exchange.identity_api import MANAGE_SCOPE
from hie.settings import load_settings


@click.group()
def identity() -> None:
    """Master patient index."""


def _summary(body: dict[str, Any]) -> str:
    names = body.get("name") or [{}]
    name = names[0].get("text") or " ".join(
        [names[0].get("family", ""), *names[0].get("given", [])]
    )
    phones = [t.get("value") for t in body.get("telecom") or [] if t.get("value")]
    parts = [name.strip() or "(no name)", body.get("gender", "?"), body.get("birthDate", "?")]
    return "  ".join(str(p) for p in parts + phones[:1])


@identity.command("review")
@click.option("--list", "only_list", is_flag=True, help="List the open reviews and stop.")
@click.option("--accept", "accept_id", type=int, help="Accept this review's link.")
@click.option("--reject", "reject_id", type=int, help="Reject this review's link.")
@click.option("--limit", default=50, show_default=True)
def review_command(
    only_list: bool, accept_id: int | None, reject_id: int | None, limit: int
) -> None:
    """Decide the possible matches waiting for a person."""
    services = build_services(load_settings())
    ops = services.exchange.identity
    actor = f"cli:{getpass.getuser()}"
    ctx = RequestContext(actor=actor, scopes=Scopes(f"{MANAGE_SCOPE} system/Patient.rs"))
    try:
        if ops is None:
            raise click.ClickException("the master patient index is not enabled")
        try:
            if accept_id is not None or reject_id is not None:
                review_id = accept_id if accept_id is not None else reject_id
                assert review_id is not None
                ref = ops.decide(ctx, review_id, accept=accept_id is not None)
                click.echo(
                    f"review {review_id}: {'accepted' if accept_id else 'rejected'} -> {ref}"
                )
                return
            items = ops.reviews(ctx, limit)
            if not items:
                click.echo("no open reviews")
                return
            for item in items:
                source = orjson.loads(
                    services.exchange.read(ctx, "Patient", item.source_id).content
                )
                target = orjson.loads(
                    services.exchange.read(ctx, "Patient", item.enterprise_id).content
                )
                click.echo(
                    f"#{item.id}  score {item.score:.1f} ({item.reason})\n"
                    f"  record     Patient/{item.source_id}: {_summary(source)}\n"
                    f"  enterprise Patient/{item.enterprise_id}: {_summary(target)}"
                )
                if only_list:
                    continue
                answer = click.prompt(
                    "  [a]ccept, [r]eject, [s]kip, [q]uit",
                    type=click.Choice(["a", "r", "s", "q"]),
                    default="s",
                    show_choices=False,
                )
                if answer == "q":
                    break
                if answer in ("a", "r"):
                    ref = ops.decide(ctx, item.id, accept=answer == "a")
                    click.echo(f"  -> {ref}")
        except FhirError as exc:
            raise click.ClickException(exc.message) from exc
    finally:
        services.close()
