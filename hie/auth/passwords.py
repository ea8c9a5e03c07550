"""Password hashes: scrypt from the standard library, parameters kept in each hash.

A hash reads ``scrypt$<log2 n>$<r>$<p>$<salt>$<key>`` (base64), so the cost can be raised
later without invalidating old hashes: they still verify, and ``needs_rehash`` says so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cached_property

_KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class PasswordHasher:
    log2_n: int = 15  # n = 32768, r = 8: 32 MiB and ~0.1 s per hash on this machine
    r: int = 8
    p: int = 1

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        key = _scrypt(password, salt, self.log2_n, self.r, self.p)
        return f"scrypt${self.log2_n}${self.r}${self.p}${_b64(salt)}${_b64(key)}"

    def verify(self, password: str, stored: str) -> bool:
        try:
            scheme, log2_n, r, p, salt, key = stored.split("$")
            if scheme != "scrypt":
                return False
            expected = base64.b64decode(key)
            actual = _scrypt(password, base64.b64decode(salt), int(log2_n), int(r), int(p))
        except ValueError:
            return False
        return hmac.compare_digest(actual, expected)

    def needs_rehash(self, stored: str) -> bool:
        return not stored.startswith(f"scrypt${self.log2_n}${self.r}${self.p}$")

    @cached_property
    def decoy(self) -> str:
        """A hash to check unknown logins against, so they take as long as known ones."""
        return self.hash(secrets.token_urlsafe(16))


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    if not 10 <= log2_n <= 20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("scrypt parameters out of range")
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r + (1 << 20),
        dklen=_KEY_BYTES,
    )
