"""``hie client``: register the OAuth2 clients (hospital systems, card readers, platforms).

hie client add NAME --org Organization/ID --scope "system/*.rs" --jwks FILE
hie client add NAME --org Organization/ID --scope "..." --generate-key OUT.pem [--key-type rsa]
hie client list | show NAME | disable NAME | enable NAME | remove NAME
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import click

from hie.app import utc_now
from hie.auth.clients import RegisteredClient, RegistrationError, generate_key, parse_jwks
from hie.auth.keys import load_or_create_signing_key
from hie.auth.services import AuthServices, build_auth
from hie.auth.tokens import TokenIssuer
from hie.consent.policy import load_policy
from hie.crypto.fields import FieldCipher
from hie.crypto.keyring import load_keyring
from hie.settings import Settings, load_settings
from hie.storage.sql.engine import build_engine


@contextlib.contextmanager
def open_auth(settings: Settings | None = None) -> Iterator[AuthServices]:
    """The authentication services alone, without the rest of the exchange."""
    settings = settings or load_settings()
    engine = build_engine(settings.database.url, synchronous=settings.database.sqlite_synchronous)
    auth = settings.auth
    issuer = TokenIssuer(
        load_or_create_signing_key(settings.data_dir),
        issuer=auth.issuer,
        audience=auth.audience,
        clock=utc_now,
    )
    policy = load_policy(Path(settings.consent.policy) if settings.consent.policy else None)
    try:
        yield build_auth(
            engine,
            auth,
            issuer=issuer,
            cipher=FieldCipher(load_keyring(settings.data_dir).encryption),
            token_url=settings.token_url,
            purpose_ttl={policy.break_glass_purpose: policy.break_glass_ttl},
        )
    finally:
        engine.dispose()


def _describe(client: RegisteredClient) -> str:
    kids = ",".join(str(k.get("kid")) for k in client.keys)
    state = "" if client.active else "  (disabled)"
    return f"{client.name}  {client.organization}  [{client.scope}]  keys: {kids}{state}"


@click.group()
def client() -> None:
    """Registered OAuth2 clients (SMART Backend Services, private_key_jwt)."""


@client.command("add")
@click.argument("name")
@click.option("--org", "organization", required=True, help="The client's Organization/ID.")
@click.option("--scope", required=True, help='Scopes it may be granted, e.g. "system/*.rs".')
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The client's public keys: a JWK Set (or one JWK) as JSON.",
)
@click.option(
    "--generate-key",
    "key_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Make a key pair: the private key goes to this PEM file, the public one is registered.",
)
@click.option(
    "--key-type",
    type=click.Choice(["ec", "rsa"]),
    default="ec",
    show_default=True,
    help="With --generate-key: EC P-384 (ES384) or RSA 3072 (RS384).",
)
def add(
    name: str,
    organization: str,
    scope: str,
    jwks_file: Path | None,
    key_out: Path | None,
    key_type: str,
) -> None:
    """Register client NAME, belonging to an organisation."""
    if (jwks_file is None) == (key_out is None):
        raise click.UsageError("give exactly one of --jwks FILE and --generate-key OUT.pem")
    with open_auth() as auth:
        if auth.clients.get(name) is not None:
            raise click.ClickException(f"a client named {name!r} is already registered")
        try:
            if jwks_file is not None:
                keys = parse_jwks(jwks_file.read_text(encoding="utf-8"))
            else:
                assert key_out is not None
                keys = [generate_key(key_out, key_type)]
            registered = auth.clients.add(name, organization, scope, keys)
        except RegistrationError as exc:
            if key_out is not None and jwks_file is None and auth.clients.get(name) is None:
                key_out.unlink(missing_ok=True)  # nothing was registered for the new key
            raise click.ClickException(str(exc)) from exc
        click.echo(_describe(registered))
        if key_out is not None:
            click.echo(f"private key: {key_out} (keep it secret; sign assertions with it)")
        click.echo(f"token endpoint (the assertion's aud): {auth.token_url}")


@client.command("list")
def list_() -> None:
    """Every registered client."""
    with open_auth() as auth:
        for registered in auth.clients.all():
            click.echo(_describe(registered))


@client.command("show")
@click.argument("name")
def show(name: str) -> None:
    """A client's registration, with its public keys as a JWK Set."""
    with open_auth() as auth:
        registered = auth.clients.get(name)
        if registered is None:
            raise click.ClickException(f"no client named {name!r}")
        click.echo(_describe(registered))
        click.echo(json.dumps({"keys": list(registered.keys)}, indent=2))


@client.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Refuse the client new tokens (tokens already issued run out within minutes)."""
    with open_auth() as auth:
        if not auth.clients.set_active(name, False):
            raise click.ClickException(f"no client named {name!r}")


@client.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Let a disabled client have tokens again."""
    with open_auth() as auth:
        if not auth.clients.set_active(name, True):
            raise click.ClickException(f"no client named {name!r}")


@client.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Forget a client and its keys."""
    with open_auth() as auth:
        if not auth.clients.remove(name):
            raise click.ClickException(f"no client named {name!r}")
