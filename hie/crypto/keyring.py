"""Keys for field encryption and blind indexes, kept in the data dir or given by the environment.

Two key sets, each with one *current* key and any number of older keys:

* ``encryption``: AES-256-GCM keys. New values are encrypted with the current key; every
  key in the set still decrypts, so rotation needs no downtime.
* ``index``: HMAC-SHA256 keys for blind indexes. Lookups compute the index under every key
  (:meth:`BlindIndex.lookup_values`) until re-indexing has finished and old keys are retired.

On disk: ``<data dir>/keys/keyring.json``, created on first use with mode 0600 in a 0700
directory; a keyring file that group or others can read is refused. In the environment::

    HIE_KEYS_ENCRYPTION="k2:<base64 32 bytes>,k1:<base64 32 bytes>"   (first is current)
    HIE_KEYS_INDEX="i1:<base64 32 bytes>"

When ``HIE_KEYS_ENCRYPTION`` is set, the environment is used and the data dir is not touched.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_ENCRYPTION",
    "ENV_INDEX",
    "KEY_BYTES",
    "KeySet",
    "Keyring",
    "KeyringError",
    "UnknownKey",
    "keyring_path",
    "load_keyring",
]

KEY_BYTES = 32
ENV_ENCRYPTION = "HIE_KEYS_ENCRYPTION"
ENV_INDEX = "HIE_KEYS_INDEX"
_FILE_FORMAT = 1
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class KeyringError(Exception):
    """The keyring cannot be loaded, saved or changed; the message says what to fix."""


class UnknownKey(KeyringError):
    """A ciphertext or index names a key the keyring does not hold."""


@dataclass(frozen=True, slots=True)
class KeySet:
    """Keys of one purpose: ``current`` names the key used for new values."""

    current: str
    keys: Mapping[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise KeyringError(f"current key {self.current!r} is not in the key set")
        for kid, key in self.keys.items():
            if not _KID.fullmatch(kid):
                raise KeyringError(f"key id {kid!r} must be 1-32 of A-Z a-z 0-9 _ -")
            if len(key) != KEY_BYTES:
                raise KeyringError(f"key {kid!r} has {len(key)} bytes, expected {KEY_BYTES}")

    def key(self, kid: str) -> bytes:
        try:
            return self.keys[kid]
        except KeyError:
            raise UnknownKey(f"no key {kid!r} in the keyring") from None

    def with_new_key(self, kid: str | None = None) -> KeySet:
        new_kid = kid or _new_kid(self.current[:1] or "k", self.keys)
        if new_kid in self.keys:
            raise KeyringError(f"key id {new_kid!r} already exists")
        keys = {new_kid: secrets.token_bytes(KEY_BYTES), **self.keys}
        return KeySet(new_kid, keys)

    def without(self, kid: str) -> KeySet:
        if kid == self.current:
            raise KeyringError(f"key {kid!r} is current and cannot be retired")
        if kid not in self.keys:
            raise KeyringError(f"no key {kid!r} to retire")
        return KeySet(self.current, {k: v for k, v in self.keys.items() if k != kid})

    @classmethod
    def generate(cls, prefix: str) -> KeySet:
        kid = _new_kid(prefix, {})
        return cls(kid, {kid: secrets.token_bytes(KEY_BYTES)})


def _new_kid(prefix: str, taken: Mapping[str, bytes]) -> str:
    while True:
        kid = prefix + secrets.token_hex(4)
        if kid not in taken:
            return kid


@dataclass(frozen=True, slots=True)
class Keyring:
    encryption: KeySet
    index: KeySet
    path: Path | None = None  # where it was loaded from; None when from the environment

    @classmethod
    def generate(cls, path: Path | None = None) -> Keyring:
        return cls(KeySet.generate("e"), KeySet.generate("i"), path)

    def rotated(self, *, index: bool = False) -> Keyring:
        """A keyring with a new current encryption key (and index key, if asked)."""
        return Keyring(
            self.encryption.with_new_key(),
            self.index.with_new_key() if index else self.index,
            self.path,
        )

    def retired(self, kid: str) -> Keyring:
        """A keyring without an old key (after every value has been re-encrypted)."""
        if kid in self.encryption.keys:
            return Keyring(self.encryption.without(kid), self.index, self.path)
        return Keyring(self.encryption, self.index.without(kid), self.path)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FILE_FORMAT,
            "encryption": _keyset_json(self.encryption),
            "index": _keyset_json(self.index),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: Path | None = None) -> Keyring:
        if data.get("format") != _FILE_FORMAT:
            raise KeyringError(f"{path or 'keyring'}: unknown format {data.get('format')!r}")
        try:
            return cls(
                _keyset_from_json(data["encryption"]), _keyset_from_json(data["index"]), path
            )
        except (KeyError, TypeError, ValueError, KeyringError) as exc:
            raise KeyringError(f"{path or 'keyring'}: malformed keyring ({exc})") from exc

    def save(self, path: Path | None = None) -> Path:
        """Write the keyring atomically with mode 0600; returns the path written."""
        target = path or self.path
        if target is None:
            raise KeyringError("keys given by the environment cannot be saved; set them there")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_json(), fh, indent=2)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target


def _keyset_json(ks: KeySet) -> dict[str, Any]:
    return {
        "current": ks.current,
        "keys": {kid: base64.b64encode(key).decode("ascii") for kid, key in ks.keys.items()},
    }


def _keyset_from_json(data: Mapping[str, Any]) -> KeySet:
    keys = {kid: base64.b64decode(b64, validate=True) for kid, b64 in data["keys"].items()}
    return KeySet(data["current"], keys)


def _keyset_from_env(name: str, value: str) -> KeySet:
    keys: dict[str, bytes] = {}
    current = ""
    for item in value.split(","):
        kid, sep, b64 = item.strip().partition(":")
        if not sep:
            raise KeyringError(f"{name}: expected 'id:base64key[,id:base64key...]'")
        try:
            keys[kid] = base64.b64decode(b64, validate=True)
        except ValueError:
            raise KeyringError(f"{name}: key {kid!r} is not valid base64") from None
        current = current or kid
    try:
        return KeySet(current, keys)
    except KeyringError as exc:
        raise KeyringError(f"{name}: {exc}") from None


def keyring_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "keyring.json"


def load_keyring(data_dir: Path, environ: Mapping[str, str] | None = None) -> Keyring:
    """The keyring from the environment if given there, else from the data dir (created if new)."""
    env = os.environ if environ is None else environ
    if env.get(ENV_ENCRYPTION):
        if not env.get(ENV_INDEX):
            raise KeyringError(f"{ENV_ENCRYPTION} is set but {ENV_INDEX} is not")
        return Keyring(
            _keyset_from_env(ENV_ENCRYPTION, env[ENV_ENCRYPTION]),
            _keyset_from_env(ENV_INDEX, env[ENV_INDEX]),
        )
    path = keyring_path(data_dir)
    if not path.exists():
        ring = Keyring.generate(path)
        try:
            _create_exclusive(path, ring)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            return ring
    return _read(path)


def _create_exclusive(path: Path, ring: Keyring) -> None:
    # Write a private temp file, then link it into place: readers never see a partial file,
    # and of two processes starting at once exactly one creates the keyring.
    tmp = ring.save(path.with_name(f".{path.name}.{secrets.token_hex(4)}.new"))
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()


def _read(path: Path) -> Keyring:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(
            f"{path} is readable by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyringError(f"{path}: cannot read keyring ({exc})") from exc
    return Keyring.from_json(data, path)
