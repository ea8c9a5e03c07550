"""Blocking: which stored records are worth comparing with a new one.

Each pass of the configuration is a list of key parts; a record yields one key per pass
(several when a part has several values, such as the readings of 单 or 曾) and none when a
part is missing. Two records are candidates when they share any key: the passes are joined by
OR, so a typo in one field loses the pair in one pass only.

Keys are plain strings meant for an indexed column (``blocking_key(key, record)``). Parts that
carry a resident ID number, phone number or other identifier go through ``protect`` (the
blind index), so the key table holds no such number in plain text.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence

from hie.identity.compare import Prepared
from hie.identity.names import soundex

__all__ = ["BlockIndex", "blocking_keys"]

_MAX_KEYS_PER_PASS = 8
_PROTECTED = ("resident_id", "phone", "identifier")


def _atom_values(p: Prepared, atom: str, protect: Callable[[str, str], str]) -> list[str]:
    kind, _, system = atom.partition(":")
    if kind == "resident_id":
        return [protect("resident_id", p.resident_id)] if p.resident_id else []
    if kind == "card_no":
        return [p.card_no] if p.card_no else []
    if kind == "phone":
        return [protect("phone", p.phone)] if len(p.phone) >= 7 else []
    if kind == "identifier":
        value = p.identifiers.get(system, "")
        return [protect(system, value)] if value else []
    if kind == "name":
        return _unique(f + n.given_pinyin[0] for n in p.names for f in n.family_pinyin)
    if kind == "family":
        return _unique(f for n in p.names for f in n.family_pinyin)
    if kind == "given":
        return _unique(n.given_pinyin[0] for n in p.names)
    if kind == "family_soundex":
        return _unique(soundex(n.family_pinyin[0]) for n in p.names)
    if kind == "given_soundex":
        return _unique(soundex(n.given_pinyin[0]) for n in p.names)
    if kind == "birth_date":
        return [p.birth] if p.birth else []
    if kind == "birth_year":
        return [p.birth[:4]] if p.birth else []
    if kind == "birth_month_day":
        # sorted, so that a day/month swap gives the same key
        return ["".join(sorted((p.birth[4:6], p.birth[6:8])))] if p.birth else []
    if kind == "postal_code":
        return [p.postal_code] if p.postal_code else []
    if kind == "locality":
        return [p.locality] if p.locality else []
    raise ValueError(f"unknown blocking key part {atom!r}")


def _unique(values: Iterable[str]) -> list[str]:
    return [v for v in dict.fromkeys(values) if v]


def _identity(kind: str, value: str) -> str:
    return value


def blocking_keys(
    p: Prepared,
    passes: Sequence[Sequence[str]],
    protect: Callable[[str, str], str] | None = None,
) -> list[str]:
    """The record's blocking keys, ``"<pass>=<value>|<value>..."``, one or more per pass."""
    guard = protect or _identity
    keys: list[str] = []
    for atoms in passes:
        values = [_atom_values(p, atom, guard) for atom in atoms]
        if not all(values):
            continue
        label = "+".join(atoms)
        for combo in itertools.islice(itertools.product(*values), _MAX_KEYS_PER_PASS):
            keys.append(label + "=" + "|".join(combo))
    return keys


class BlockIndex:
    """An in-memory key -> record ids index (what a SQL store does with an indexed table)."""

    def __init__(self) -> None:
        self._index: dict[str, list[Hashable]] = defaultdict(list)

    def add(self, record_id: Hashable, keys: Iterable[str]) -> None:
        for key in keys:
            self._index[key].append(record_id)

    def candidates(self, keys: Iterable[str]) -> set[Hashable]:
        out: set[Hashable] = set()
        for key in keys:
            out.update(self._index.get(key, ()))
        return out

    def __len__(self) -> int:
        return len(self._index)
