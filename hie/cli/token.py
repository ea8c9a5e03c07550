"""``hie token``: mint an access token for administration and tests."""

from __future__ import annotations

from pathlib import Path

import click

from hie.app import utc_now
from hie.auth.keys import load_or_create_signing_key
from hie.auth.tokens import TokenIssuer
from hie.consent.policy import load_policy
from hie.settings import load_settings


@click.command()
@click.option("--scope", default="system/*.cruds", show_default=True, help="SMART v2 scopes.")
@click.option("--org", "organization", help="The caller's organisation, e.g. Organization/123.")
@click.option("--purpose", help="Purpose of use code (e.g. TREAT, BTG).")
@click.option("--reason", help="Stated reason (required with --purpose BTG).")
@click.option("--ttl", type=click.IntRange(1, 366 * 86400), help="Lifetime in seconds.")
@click.option("--subject", default="admin", show_default=True, help="Who the token is for.")
def token(
    scope: str,
    organization: str | None,
    purpose: str | None,
    reason: str | None,
    ttl: int | None,
    subject: str,
) -> None:
    """Print one bearer token and nothing else."""
    settings = load_settings()
    ttl = ttl or settings.auth.token_ttl
    policy = load_policy(Path(settings.consent.policy) if settings.consent.policy else None)
    if purpose == policy.break_glass_purpose:
        # Break-glass needs a stated reason and is short-lived (docs/consent.md).
        if not (reason or "").strip():
            raise click.UsageError(f"--purpose {purpose} needs --reason")
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
            scope=scope,
            ttl=ttl,
            organization=organization,
            purpose=purpose,
            reason=reason,
        )
    )
