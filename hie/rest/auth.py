"""Bearer-token authentication for every HTTP way in (FHIR, card, DICOMweb)."""

from __future__ import annotations

from collections.abc import Callable

from flask import request

from hie.auth.tokens import TokenVerifier
from hie.context import RequestContext
from hie.errors import Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hie"'}


def bearer_context(
    verifier: TokenVerifier, header: str | None, source: str | None
) -> RequestContext:
    """The caller named by an ``Authorization: Bearer`` header, or a 401."""
    if not header:
        raise Unauthorized(
            "this endpoint needs 'Authorization: Bearer <token>'", headers=_CHALLENGE
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", headers=_CHALLENGE)
    return verifier.verify(token.strip()).context(source=source)


def bearer_authenticator(verifier: TokenVerifier) -> Callable[[], RequestContext]:
    def authenticate() -> RequestContext:
        return bearer_context(verifier, request.headers.get("Authorization"), request.remote_addr)

    return authenticate
