"""Field encryption: AES-256-GCM with the key id in the envelope.

Envelope (ASCII, fits a TEXT column)::

    hie1.<key id>.<base64url(12-byte nonce || ciphertext || 16-byte tag)>

The associated data binds the ciphertext to the envelope version, the key id and a caller's
``context`` (e.g. ``b"patient.resident_id"``), so a value cannot be moved to another column or
relabelled with another key id without failing authentication.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hie.crypto.keyring import KeySet

__all__ = ["DecryptionError", "FieldCipher", "envelope_key_id"]

_VERSION = "hie1"
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext is malformed, was tampered with, or belongs to another context."""


def envelope_key_id(ciphertext: str) -> str:
    """The key id a ciphertext was made with."""
    return _split(ciphertext)[1]


def _split(ciphertext: str) -> tuple[str, str, str]:
    parts = ciphertext.split(".")
    if len(parts) != 3 or parts[0] != _VERSION or not parts[1]:
        raise DecryptionError("not a hie1 field ciphertext")
    return parts[0], parts[1], parts[2]


class FieldCipher:
    """Encrypts with the current key of a key set; decrypts with any key in it."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys
        self._aead = {kid: AESGCM(key) for kid, key in keys.keys.items()}

    @property
    def current_key_id(self) -> str:
        return self._keys.current

    def encrypt(self, plaintext: str, context: bytes = b"") -> str:
        kid = self._keys.current
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead[kid].encrypt(nonce, plaintext.encode("utf-8"), _aad(kid, context))
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{_VERSION}.{kid}.{body}"

    def decrypt(self, ciphertext: str, context: bytes = b"") -> str:
        _, kid, body = _split(ciphertext)
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptionError(f"no key {kid!r} in the keyring")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            raise DecryptionError("ciphertext is not base64url") from None
        if len(raw) < _NONCE_BYTES + 16:
            raise DecryptionError("ciphertext is too short")
        try:
            plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(kid, context))
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication") from None
        return plain.decode("utf-8")

    def is_current(self, ciphertext: str) -> bool:
        """Whether the ciphertext is under the current key (no re-encryption needed)."""
        return envelope_key_id(ciphertext) == self._keys.current


def _aad(kid: str, context: bytes) -> bytes:
    return f"{_VERSION}.{kid}.".encode("ascii") + context
