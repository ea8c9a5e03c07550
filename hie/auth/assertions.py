"""Client assertions (``private_key_jwt``, RFC 7523), checked as SMART Backend Services asks.

An assertion is accepted when: its ``alg`` is RS384 or ES384 and matches a registered key
of the client it names; ``iss`` and ``sub`` are that client; ``aud`` is this token
endpoint's URL; it expires at most five minutes after now (and after its ``iat``); and its
``jti`` has not been seen before. Used ``jti`` values are kept in the database until the
assertion expires, so a replay is refused by every worker, and after a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from hie.auth.clients import ALGORITHMS, ClientRegistry, RegisteredClient, valid_name
from hie.auth.db import AuthDatabase
from hie.auth.errors import invalid_client
from hie.auth.models import AssertionRow

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_JTI_LENGTH = 255


def claimed_client(assertion: str) -> str | None:
    """The client an assertion claims to come from, unverified (for the audit trail)."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    iss = claims.get("iss")
    if not isinstance(iss, str):
        return None
    # Untrusted text bound for the audit trail: printable, and short.
    return "".join(c if c.isprintable() else "?" for c in iss[:64])


class AssertionVerifier:
    def __init__(
        self,
        clients: ClientRegistry,
        db: AuthDatabase,
        *,
        audience: str,
        clock: Callable[[], float] = time.time,
        max_lifetime: int = 300,
        leeway: int = 30,
    ) -> None:
        self._clients = clients
        self._db = db
        self.audience = audience
        self._clock = clock
        self._max_lifetime = max_lifetime
        self._leeway = leeway

    def verify(self, assertion: str) -> RegisteredClient:
        """The client that signed ``assertion``, or an ``invalid_client`` OAuthError."""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise invalid_client(f"the client assertion is not a JWT: {exc}") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise invalid_client(f"assertion alg {alg!r} is not accepted; use RS384 or ES384")
        name = unverified.get("iss")
        if not isinstance(name, str) or unverified.get("sub") != name:
            raise invalid_client("the assertion's iss and sub must both be the client_id")
        client = self._clients.get(name) if valid_name(name) else None
        if client is None or not client.active:
            raise invalid_client(f"no active client is registered as {name!r}")
        kid = header.get("kid")
        key = client.verification_key(kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise invalid_client(f"no key registered for {name!r} matches kid {kid!r} and {alg}")
        claims = self._decode(assertion, key, alg, name)
        self._check_times(claims)
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH or not jti.isprintable():
            raise invalid_client(
                f"jti must be a string of 1 to {MAX_JTI_LENGTH} printable characters"
            )
        self._remember(name, jti, int(claims["exp"]))
        return client

    def _decode(self, assertion: str, key: Any, alg: str, name: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=name,
                # Times are checked against the injected clock below.
                options={
                    "require": ["iss", "sub", "aud", "exp", "jti"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError as exc:
            raise invalid_client(f"the assertion's aud must be {self.audience}") from exc
        except jwt.InvalidSignatureError as exc:
            raise invalid_client("the assertion's signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise invalid_client(f"the client assertion is not valid: {exc}") from exc
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        times = {}
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid_client(f"the assertion's {name} is not a number")
            times[name] = float(value)
        exp = times["exp"]
        if exp <= now - self._leeway:
            raise invalid_client("the client assertion has expired")
        if exp - now > self._max_lifetime + self._leeway:
            raise invalid_client(
                f"the client assertion must expire within {self._max_lifetime} seconds"
            )
        iat = times.get("iat")
        if iat is not None and (iat > now + self._leeway or exp - iat > self._max_lifetime):
            raise invalid_client(
                f"the assertion's iat is in the future, or it lives over {self._max_lifetime} s"
            )
        if times.get("nbf", now) > now + self._leeway:
            raise invalid_client("the client assertion is not valid yet")

    def _remember(self, client: str, jti: str, expires_at: int) -> None:
        now = int(self._clock())
        try:
            with self._db.writing() as session:
                # Seen ids are only needed while an assertion could still be accepted.
                session.execute(delete(AssertionRow).where(AssertionRow.expires_at < now - 60))
                session.add(
                    AssertionRow(client=client, jti=jti, expires_at=expires_at + self._leeway)
                )
        except IntegrityError:
            raise invalid_client("this assertion's jti has been used before (replay)") from None
