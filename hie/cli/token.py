"""``hie token``: mint an access token for administration and tests.

    hie token [--scope "system/*.cruds"] [--org Organization/ID] [--purpose CODE --reason TEXT]
    hie token --client NAME [--scope ...] [--purpose CODE --reason TEXT]

With ``--client`` the token is what the registered client would get at ``/auth/token``:
its organisation, its registered scopes (narrowed by ``--scope`` if given), short-lived.
"""

from __future__ import annotations

from pathlib import Path

import click

from hie.app import utc_now
from hie.auth.keys import load_or_create_signing_key
from hie.auth.scopes import grant
from hie.auth.tokens import TokenIssuer
from hie.cli.clients import open_auth
from hie.consent.policy import load_policy
from hie.settings import load_settings

DEFAULT_SCOPE = "system/*.cruds"


@click.command()
@click.option("--scope", help=f"SMART v2 scopes (default {DEFAULT_SCOPE}, or the client's).")
@click.option("--org", "organization", help="The caller's organisation, e.g. Organization/123.")
@click.option("--client", "client_name", help="Mint the token of this registered client.")
@click.option("--purpose", help="Purpose of use code (e.g. TREAT, BTG).")
@click.option("--reason", help="Stated reason (required with --purpose BTG).")
@click.option("--ttl", type=click.IntRange(1, 366 * 86400), help="Lifetime in seconds.")
@click.option("--subject", default="admin", show_default=True, help="Who the token is for.")
def token(
    scope: str | None,
    organization: str | None,
    client_name: str | None,
    purpose: str | None,
    reason: str | None,
    ttl: int | None,
    subject: str,
) -> None:
    """Print one bearer token and nothing else."""
    settings = load_settings()
    policy = load_policy(Path(settings.consent.policy) if settings.consent.policy else None)
    if purpose == policy.break_glass_purpose and not (reason or "").strip():
        # Break-glass needs a stated reason and is short-lived (docs/consent.md).
        raise click.UsageError(f"break-glass (--purpose {purpose}) needs a --reason")
    if client_name is not None:
        if organization is not None:
            raise click.UsageError("--org comes from the client's registration; omit it")
        with open_auth(settings) as auth:
            registered = auth.clients.get(client_name)
            if registered is None or not registered.active:
                raise click.ClickException(f"no active client named {client_name!r}")
            scopes = grant(scope, registered.scope) if scope else registered.scope
            if not scopes:
                raise click.ClickException(f"{client_name} is not registered for {scope!r}")
            issued = auth.grants.issue(registered, scopes, ttl=ttl, purpose=purpose, reason=reason)
        click.echo(issued.access_token)
        return
    ttl = ttl or settings.auth.token_ttl
    if purpose == policy.break_glass_purpose:
        if organization is None:
            raise click.UsageError(f"--purpose {purpose} needs --org")
        ttl = min(ttl, policy.break_glass_ttl)
    key = load_or_create_signing_key(settings.data_dir)
    issuer = TokenIssuer(
        key, issuer=settings.auth.issuer, audience=settings.auth.audience, clock=utc_now
    )
    click.echo(
        issuer.issue(
            subject=subject,
            scope=scope or DEFAULT_SCOPE,
            ttl=ttl,
            organization=organization,
            purpose=purpose,
            reason=reason,
        )
    )
