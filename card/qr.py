"""Dynamic QR tokens for the electronic health card.

A token is a JWT signed with the server's Ed25519 key, audience ``hie-card-qr`` (so it can
never pass as an access token, whose audience differs), bound to one card by ``sub``,
valid for ``ttl`` seconds and single-use by its ``jti`` (the card tables remember used
ones). Expiry is checked against the service clock, after the signature.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from card import problems
from card.problems import CardProblem

AUDIENCE = "hie-card-qr"
_ALGORITHM = "EdDSA"


@dataclass(frozen=True, slots=True)
class QrClaims:
    card_no: str
    jti: str
    expires: int


class QrTokens:
    def __init__(
        self, key: Ed25519PrivateKey, *, issuer: str, ttl: int, clock: Callable[[], datetime]
    ) -> None:
        self._key = key
        self._public = key.public_key()
        self._issuer = issuer
        self.ttl = ttl
        self._clock = clock

    def issue(self, card_no: str) -> tuple[str, int]:
        """A fresh token for the card and its expiry (epoch seconds)."""
        now = int(self._clock().timestamp())
        claims = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": card_no,
            "jti": secrets.token_hex(12),
            "iat": now,
            "exp": now + self.ttl,
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM), now + self.ttl

    def verify(self, token: str) -> QrClaims:
        """The claims of a genuine, unexpired token (its single use is checked by the caller)."""
        try:
            raw = jwt.decode(
                token,
                self._public,
                algorithms=[_ALGORITHM],
                audience=AUDIENCE,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "jti"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise CardProblem(problems.QR_INVALID, f"the QR token is not genuine: {exc}") from exc
        if not isinstance(raw.get("exp"), int) or not isinstance(raw.get("sub"), str):
            raise CardProblem(problems.QR_INVALID, "the QR token's claims are malformed")
        if raw["exp"] <= self._clock().timestamp():
            raise CardProblem(problems.QR_EXPIRED, "the QR token has expired; show a fresh one")
        return QrClaims(card_no=raw["sub"], jti=str(raw["jti"]), expires=raw["exp"])
