"""``hie user``: clinicians' accounts for the web UI.

    hie user add LOGIN --practitioner Practitioner/ID --role PractitionerRole/ID \\
        --org Organization/ID [--scope "user/*.rs"] [--totp] [--password-stdin]
    hie user list | password LOGIN | totp LOGIN | unlock LOGIN | disable LOGIN
    hie user enable LOGIN | remove LOGIN

The password is asked for twice on the terminal, or read as one line from standard input
with ``--password-stdin``. With ``--totp`` the account needs a one-time code as well; its
``otpauth://`` URI is printed once, for an authenticator app.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from hie.auth import totp
from hie.auth.accounts import DEFAULT_SCOPE, Account, AccountError, check_password
from hie.cli.clients import open_auth
from hie.context import RequestContext
from hie.errors import FhirError
from hie.exchange import Exchange


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _read(exchange: Exchange, reference: str) -> dict[str, Any]:
    rtype, _, rid = reference.partition("/")
    try:
        stored = exchange.read(RequestContext.system("hie-cli"), rtype, rid)
    except FhirError as exc:
        raise click.ClickException(f"{reference}: {exc}") from exc
    resource: dict[str, Any] = orjson.loads(stored.content)
    return resource


def check_links(exchange: Exchange, practitioner: str, role: str, organization: str) -> None:
    """The three resources exist, and the role joins that practitioner to that organisation."""
    _read(exchange, practitioner)
    _read(exchange, organization)
    found = _read(exchange, role)
    for element, expected in (("practitioner", practitioner), ("organization", organization)):
        reference = (found.get(element) or {}).get("reference")
        if reference and reference.rsplit("/", 2)[-2:] != expected.split("/"):
            raise click.ClickException(f"{role}.{element} is {reference}, not {expected}")


def _describe(account: Account) -> str:
    flags = " totp" if account.totp else ""
    flags += "" if account.active else " (disabled)"
    return (
        f"{account.login}  {account.practitioner}  {account.role}  {account.organization}"
        f"  [{account.scope}]{flags}"
    )


@click.group()
def user() -> None:
    """Clinicians' accounts for the web UI (/ui)."""


@user.command("add")
@click.argument("login")
@click.option("--practitioner", required=True, help="The person: Practitioner/ID.")
@click.option("--role", required=True, help="Their PractitionerRole/ID at the organisation.")
@click.option("--org", "organization", required=True, help="The Organization/ID they act for.")
@click.option("--scope", default=DEFAULT_SCOPE, show_default=True, help="user/ scopes.")
@click.option("--totp", "with_totp", is_flag=True, help="Require a TOTP code at sign-in.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--no-check", is_flag=True, help="Do not check that the three resources exist and agree."
)
@click.pass_context
def add(
    ctx: click.Context,
    login: str,
    practitioner: str,
    role: str,
    organization: str,
    scope: str,
    with_totp: bool,
    password_stdin: bool,
    no_check: bool,
) -> None:
    """Create the account LOGIN."""
    if not no_check:
        services = ctx.obj.services if ctx.obj is not None else None
        if services is not None:
            check_links(services.exchange, practitioner, role, organization)
    password = _password(password_stdin)
    with open_auth() as auth:
        try:
            account, secret = auth.accounts.add(
                login,
                password,
                practitioner=practitioner,
                role=role,
                organization=organization,
                scope=scope,
                with_totp=with_totp,
            )
        except AccountError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(_describe(account))
    if secret is not None:
        click.echo(f"TOTP secret: {secret}")
        click.echo(f"TOTP URI: {totp.provisioning_uri(secret, login)}")


@user.command("list")
def list_() -> None:
    """Every account."""
    with open_auth() as auth:
        for account in auth.accounts.all():
            click.echo(_describe(account))


@user.command("password")
@click.argument("login")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def password(login: str, password_stdin: bool) -> None:
    """Set a new password (and sign the account out everywhere)."""
    value = _password(password_stdin)
    try:
        check_password(value)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    with open_auth() as auth:
        if not auth.accounts.set_password(login, value):
            raise click.ClickException(f"no account {login!r}")
        auth.logins.sessions.close_all(login)


@user.command("totp")
@click.argument("login")
def reset_totp(login: str) -> None:
    """Give the account a new TOTP secret (turning TOTP on if it was off)."""
    with open_auth() as auth:
        secret = auth.accounts.reset_totp(login)
        if secret is None:
            raise click.ClickException(f"no account {login!r}")
        auth.logins.sessions.close_all(login)
    click.echo(f"TOTP secret: {secret}")
    click.echo(f"TOTP URI: {totp.provisioning_uri(secret, login)}")


@user.command("unlock")
@click.argument("login")
def unlock(login: str) -> None:
    """Forget the account's failed sign-in attempts."""
    with open_auth() as auth:
        auth.logins.throttle.clear(login)


@user.command("disable")
@click.argument("login")
def disable(login: str) -> None:
    """Refuse sign-in and end the account's sessions."""
    with open_auth() as auth:
        if not auth.accounts.set_active(login, False):
            raise click.ClickException(f"no account {login!r}")
        auth.logins.sessions.close_all(login)


@user.command("enable")
@click.argument("login")
def enable(login: str) -> None:
    """Allow a disabled account to sign in again."""
    with open_auth() as auth:
        if not auth.accounts.set_active(login, True):
            raise click.ClickException(f"no account {login!r}")


@user.command("remove")
@click.argument("login")
def remove(login: str) -> None:
    """Delete the account (its sessions go with it)."""
    with open_auth() as auth:
        if not auth.accounts.remove(login):
            raise click.ClickException(f"no account {login!r}")
