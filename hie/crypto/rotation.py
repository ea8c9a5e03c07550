"""Re-encryption after a key rotation, row by row, without downtime.

``hie keys rotate`` makes a new current key (old keys stay and still decrypt), then feeds
every stored secret through :func:`rewrap` and writes back what it yields, in batches, with a
progress bar. Rows already under the current keys are skipped, so an interrupted run can
simply be started again; readers keep working throughout because every key still decrypts
and lookups try every index key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from hie.crypto.blind_index import BlindIndex
from hie.crypto.fields import FieldCipher

__all__ = ["Rewrapped", "SecretRow", "needs_rewrap", "rewrap"]

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class SecretRow(Generic[K]):
    """One stored secret: the row's key, its ciphertext and (if indexed) its blind index."""

    row: K
    ciphertext: str
    index: str | None = None


@dataclass(frozen=True, slots=True)
class Rewrapped(Generic[K]):
    row: K
    ciphertext: str
    index: str | None


def needs_rewrap(item: SecretRow[K], cipher: FieldCipher, blind: BlindIndex | None) -> bool:
    if not cipher.is_current(item.ciphertext):
        return True
    return item.index is not None and blind is not None and not blind.is_current(item.index)


def rewrap(
    rows: Iterable[SecretRow[K]],
    cipher: FieldCipher,
    *,
    context: bytes = b"",
    blind: BlindIndex | None = None,
    kind: str = "",
) -> Iterator[Rewrapped[K]]:
    """The rows that need it, re-encrypted under the current key and re-indexed.

    Rows whose ciphertext and index are already current are skipped (the caller's progress
    bar counts the input rows it feeds in, not the output).
    """
    for item in rows:
        if not needs_rewrap(item, cipher, blind):
            continue
        plain = cipher.decrypt(item.ciphertext, context)
        index = item.index
        if blind is not None and item.index is not None:
            index = blind.value(kind, plain)
        yield Rewrapped(item.row, cipher.encrypt(plain, context), index)
