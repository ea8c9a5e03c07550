"""``hie dicom`` commands, for the application's CLI to mount::

    main.add_command(dicom_group(open_registry=..., run=...))

``hie dicom`` runs the DICOM services alone (and starts ``dicom.processes - 1`` more
``hie dicom --worker`` processes on the same port); ``hie dicom ae add AET --org Organization/ID
[--host H --port P]`` registers a calling AE (and move destination); ``ae remove`` and
``ae list`` do what they say.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from adapters.dicom.registry import AeRegistry


def dicom_group(
    open_registry: Callable[[], AeRegistry], run: Callable[[bool, int | None], None]
) -> click.Group:
    @click.group(name="dicom", invoke_without_command=True)
    @click.option("--worker", is_flag=True, hidden=True, help="one of several listeners")
    @click.option("--port", type=int, default=None, hidden=True, help="the shared port")
    @click.pass_context
    def dicom(ctx: click.Context, worker: bool, port: int | None) -> None:
        """Run the DICOM services alone (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET), in
        ``dicom.processes`` processes sharing the port."""
        if ctx.invoked_subcommand is None:
            run(worker, port)

    @dicom.group(name="ae")
    def ae() -> None:
        """Calling AEs: which organisation a DICOM peer belongs to, and where C-MOVE goes."""

    @ae.command(name="add")
    @click.argument("ae_title")
    @click.option("--org", "organization", required=True, help="Organization/ID")
    @click.option("--host", default=None, help="move destination host")
    @click.option("--port", type=int, default=None, help="move destination port")
    def add(ae_title: str, organization: str, host: str | None, port: int | None) -> None:
        """Register (or re-register) AE_TITLE."""
        try:
            registered = open_registry().add(ae_title, organization, host, port)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        where = f" -> {registered.host}:{registered.port}" if registered.is_move_destination else ""
        click.echo(f"{registered.ae_title}  {registered.organization}{where}")

    @ae.command(name="remove")
    @click.argument("ae_title")
    def remove(ae_title: str) -> None:
        """Forget AE_TITLE."""
        if not open_registry().remove(ae_title):
            raise click.ClickException(f"{ae_title} is not registered")

    @ae.command(name="list")
    def list_() -> None:
        """Every registered calling AE."""
        for registered in open_registry().all():
            where = (
                f"  {registered.host}:{registered.port}" if registered.is_move_destination else ""
            )
            click.echo(f"{registered.ae_title:<16}  {registered.organization}{where}")

    return dicom
