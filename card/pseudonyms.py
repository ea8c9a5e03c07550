"""Per-platform pseudonyms: a stable identifier for a person that differs per organisation.

``HMAC-SHA256(key, organisation || 0 || resident ID)``: the same person always gets the
same pseudonym at one organisation, two organisations cannot join their pseudonyms, and
nobody without the key can go from a pseudonym back to the resident ID. The key is not
the blind-index key, because blind-index keys rotate and pseudonyms must not change. It
is kept in ``<data dir>/keys/card-pseudonym.key`` (0600) or given base64-encoded in
``HIE_CARD_PSEUDONYM_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

ENV_KEY = "HIE_CARD_PSEUDONYM_KEY"
KEY_FILE = "keys/card-pseudonym.key"
PREFIX = "pp1-"


def load_or_create_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    env = os.environ if environ is None else environ
    if env.get(ENV_KEY):
        key = base64.b64decode(env[ENV_KEY], validate=True)
        if len(key) < 32:
            raise ValueError(f"{ENV_KEY} must hold at least 32 bytes")
        return key
    path = data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.b64encode(secrets.token_bytes(32)) + b"\n")
    return base64.b64decode(path.read_bytes().strip(), validate=True)


class Pseudonyms:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def of(self, organization: str, resident_id: str) -> str:
        msg = organization.encode() + b"\x00" + resident_id.encode()
        digest = hmac.new(self._key, msg, hashlib.sha256).digest()[:20]
        return PREFIX + base64.b32encode(digest).decode("ascii").lower()
