"""Access tokens: JWTs signed by the server's own Ed25519 key.

Verification is cached per token string (tokens are immutable), so the read path pays
for one signature check per token, not per request; expiry is still checked every time.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hie.context import RequestContext, Scopes
from hie.errors import Unauthorized

ALGORITHM = "EdDSA"
_CONTEXTS_PER_TOKEN = 64  # source addresses remembered per cached token


@dataclass(frozen=True)
class Claims:
    subject: str
    scope: str
    organization: str | None
    purpose: str | None
    reason: str | None
    expires: int
    token_id: str
    issued: int | None = None

    @cached_property
    def scopes(self) -> Scopes:
        # Parsed once per token: the verifier caches Claims, so requests reuse this.
        return Scopes(self.scope)

    @cached_property
    def _contexts(self) -> dict[str | None, RequestContext]:
        return {}

    def context(self, source: str | None = None) -> RequestContext:
        # Immutable, so one per token and source address serves all their requests.
        contexts = self._contexts
        ctx = contexts.get(source)
        if ctx is None:
            if len(contexts) >= _CONTEXTS_PER_TOKEN:
                contexts.clear()
            ctx = contexts[source] = RequestContext(
                actor=self.subject,
                organization=self.organization,
                purpose=self.purpose,
                reason=self.reason,
                scopes=self.scopes,
                source=source,
                token_id=self.token_id,
                issued_at=self.issued,
            )
        return ctx


class TokenIssuer:
    def __init__(
        self, key: Ed25519PrivateKey, *, issuer: str, audience: str, clock: Callable[[], datetime]
    ) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    def issue(
        self,
        *,
        subject: str,
        scope: str,
        ttl: int,
        organization: str | None = None,
        purpose: str | None = None,
        reason: str | None = None,
        client: str | None = None,
    ) -> str:
        now = int(self._clock().timestamp())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "scope": scope,
        }
        extra = (
            ("org", organization),
            ("purpose", purpose),
            ("reason", reason),
            ("client_id", client),
        )
        for name, value in extra:
            if value:
                claims[name] = value
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)


class TokenVerifier:
    def __init__(
        self,
        key: Ed25519PublicKey,
        *,
        issuer: str,
        audience: str,
        clock: Callable[[], datetime],
        cache_size: int = 10_000,
    ) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def verify(self, token: str) -> Claims:
        now = self._clock().timestamp()
        with self._lock:
            cached = self._cache.get(token)
        if cached is None:
            cached = self._decode(token)
            with self._lock:
                self._cache[token] = cached
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if cached.expires <= now:
            raise Unauthorized(
                "the access token has expired",
                headers={"WWW-Authenticate": 'Bearer realm="hie", error="invalid_token"'},
            )
        return cached

    def _decode(self, token: str) -> Claims:
        try:
            raw = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "jti"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(
                f"the access token is not valid: {exc}",
                headers={"WWW-Authenticate": 'Bearer realm="hie", error="invalid_token"'},
            ) from exc
        return Claims(
            subject=str(raw["sub"]),
            scope=str(raw.get("scope", "")),
            organization=raw.get("org"),
            purpose=raw.get("purpose"),
            reason=raw.get("reason"),
            expires=int(raw["exp"]),
            token_id=str(raw["jti"]),
            issued=int(raw["iat"]) if isinstance(raw.get("iat"), int | float) else None,
        )
