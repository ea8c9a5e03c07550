"""The ``hie`` command: one group, one module per concern."""

from __future__ import annotations

import click

from adapters.hl7v2.cli import hl7, mllp
from card.cli import card
from hie import __version__
from hie.cli.audit import audit
from hie.cli.clients import client
from hie.cli.db import db
from hie.cli.environment import CliEnvironment
from hie.cli.identity import identity
from hie.cli.importing import import_command
from hie.cli.keys import keys
from hie.cli.listeners import dicom
from hie.cli.search import search
from hie.cli.serve import serve
from hie.cli.token import token
from hie.cli.users import user


@click.group()
@click.version_option(__version__, prog_name="hie")
@click.pass_context
def main(ctx: click.Context) -> None:
    """hie: the Mianyang health information exchange."""
    ctx.obj = CliEnvironment()


main.add_command(db)
main.add_command(serve)
main.add_command(token)
main.add_command(import_command)
main.add_command(dicom)
main.add_command(hl7)
main.add_command(mllp)
main.add_command(search)
main.add_command(audit)
main.add_command(card)
main.add_command(keys)
main.add_command(identity)
main.add_command(client)
main.add_command(user)
