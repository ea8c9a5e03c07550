"""The ``hie`` command: one group, one module per concern."""

from __future__ import annotations

import click

from hie import __version__
from hie.cli.db import db
from hie.cli.importing import import_command
from hie.cli.listeners import dicom
from hie.cli.search import search
from hie.cli.serve import serve
from hie.cli.token import token


@click.group()
@click.version_option(__version__, prog_name="hie")
def main() -> None:
    """hie: the Mianyang health information exchange."""


main.add_command(db)
main.add_command(serve)
main.add_command(token)
main.add_command(import_command)
main.add_command(search)
main.add_command(dicom)
