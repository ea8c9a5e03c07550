"""The ``hie`` command."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """hie: the Mianyang health information exchange."""
