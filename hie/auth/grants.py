"""The client-credentials grant of SMART Backend Services: an assertion in, a token out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hie.auth.assertions import CLIENT_ASSERTION_TYPE, AssertionVerifier, claimed_client
from hie.auth.clients import RegisteredClient
from hie.auth.errors import (
    OAuthError,
    invalid_request,
    invalid_scope,
    unsupported_grant_type,
)
from hie.auth.scopes import grant
from hie.auth.tokens import TokenIssuer

GRANT_TYPE = "client_credentials"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    client: RegisteredClient

    def to_json(self) -> dict[str, str | int]:
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


@dataclass(frozen=True)
class TokenRequest:
    """The form of one token request, each parameter at most once (RFC 6749 §3.2)."""

    form: Mapping[str, Sequence[str]]

    def one(self, name: str) -> str | None:
        values = self.form.get(name) or []
        if len(values) > 1:
            raise invalid_request(f"parameter {name!r} is given more than once")
        return values[0] if values else None

    @property
    def claimed_client(self) -> str | None:
        values = self.form.get("client_assertion") or []
        return claimed_client(values[0]) if len(values) == 1 else None


class ClientCredentials:
    def __init__(
        self,
        verifier: AssertionVerifier,
        issuer: TokenIssuer,
        *,
        ttl: int,
        purpose_ttl: Mapping[str, int] | None = None,
    ) -> None:
        self._verifier = verifier
        self._issuer = issuer
        self._ttl = ttl
        # The longest life of a token of these purposes (break-glass), whatever is asked.
        self._purpose_ttl = dict(purpose_ttl or {})

    def token(self, request: TokenRequest) -> IssuedToken:
        """A short-lived access token for the client, or an OAuthError saying why not."""
        grant_type = request.one("grant_type")
        if grant_type is None:
            raise invalid_request("grant_type is required")
        if grant_type != GRANT_TYPE:
            raise unsupported_grant_type(f"only grant_type={GRANT_TYPE} is supported")
        if request.one("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise invalid_request(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        assertion = request.one("client_assertion")
        if not assertion:
            raise invalid_request("client_assertion is required")
        scope = request.one("scope")
        if not scope or not scope.split():
            raise invalid_request("scope is required")
        client = self._verifier.verify(assertion)
        granted = grant(scope, client.scope)
        if not granted:
            raise invalid_scope(f"none of the requested scopes is registered for {client.name}")
        return self.issue(client, granted)

    def issue(
        self,
        client: RegisteredClient,
        scope: str,
        *,
        ttl: int | None = None,
        purpose: str | None = None,
        reason: str | None = None,
    ) -> IssuedToken:
        lifetime = ttl or self._ttl
        if purpose in self._purpose_ttl:
            lifetime = min(lifetime, self._purpose_ttl[purpose])
        token = self._issuer.issue(
            subject=client.name,
            scope=scope,
            ttl=lifetime,
            organization=client.organization,
            purpose=purpose,
            reason=reason,
            client=client.name,
        )
        return IssuedToken(token, lifetime, scope, client)


__all__ = ["ClientCredentials", "IssuedToken", "OAuthError", "TokenRequest"]
