"""Blind indexes: HMAC-SHA256 of a normalised value, for exact lookup without plaintext.

Index value: ``<key id>.<base64url(first 16 bytes of HMAC)>``. The ``kind`` (e.g.
``"resident_id"``, ``"phone"``) is part of the MAC input, so equal strings of different kinds
never share an index. 128 bits keep collisions out of reach for any registry size.

During index-key rotation a lookup must match rows indexed under the old key too:
:meth:`BlindIndex.lookup_values` gives one value per key, for ``WHERE idx IN (...)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

from hie.crypto import normalise
from hie.crypto.keyring import KeySet

__all__ = ["BlindIndex", "index_key_id"]

_DIGEST_BYTES = 16
_NORMALISERS: dict[str, Callable[[str], str]] = {
    "phone": normalise.phone,
}


def index_key_id(index_value: str) -> str:
    return index_value.partition(".")[0]


class BlindIndex:
    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    @property
    def current_key_id(self) -> str:
        return self._keys.current

    def value(self, kind: str, plaintext: str) -> str:
        """The index under the current key; store this next to the ciphertext."""
        return self._mac(self._keys.current, kind, plaintext)

    def lookup_values(self, kind: str, plaintext: str) -> list[str]:
        """The index under every key, current first: match any of them."""
        return [self._mac(kid, kind, plaintext) for kid in self._keys.keys]

    def is_current(self, index_value: str) -> bool:
        return index_key_id(index_value) == self._keys.current

    def _mac(self, kid: str, kind: str, plaintext: str) -> str:
        canonical = _NORMALISERS.get(kind, normalise.identifier)(plaintext)
        msg = kind.encode("utf-8") + b"\x00" + canonical.encode("utf-8")
        digest = hmac.new(self._keys.key(kid), msg, hashlib.sha256).digest()[:_DIGEST_BYTES]
        return kid + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
