"""Field comparators: each turns a pair of prepared records into an agreement level.

A comparator returns one of its levels (:data:`hie.identity.config.COMPARATOR_LEVELS`) or
None when either side lacks the value, which then weighs nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from hie.crypto import normalise
from hie.identity.names import NameForms, has_hanzi, name_forms
from hie.identity.record import PersonRecord
from hie.identity.similarity import bigrams, dice, jaro_winkler, one_edit_apart

__all__ = ["COMPARATORS", "Prepared", "prepare"]

# ASCII and full-width punctuation (NFKC has already folded most full-width forms)
_ADDRESS_DROP = re.compile(r"[\s,.#\-/()\u3001\u3002]")
_NAME_SIMILAR = 0.92
_NAME_PARTIAL = 0.84
_ADDRESS_SIMILAR = 0.72


@dataclass(frozen=True, slots=True)
class Prepared:
    """A record with its comparison forms computed once."""

    record: PersonRecord
    names: tuple[NameForms, ...]
    resident_id: str
    resident_id_valid: bool
    card_no: str
    phone: str
    birth: str  # YYYYMMDD or ""
    gender: str  # "male" / "female" / ""
    address: str
    address_grams: frozenset[str]
    locality: str
    postal_code: str
    identifiers: dict[str, str]


def prepare(record: PersonRecord, resident_id_valid: Callable[[str], bool]) -> Prepared:
    rid = normalise.identifier(record.resident_id or "")
    address = _address_key(record.address or "")
    return Prepared(
        record=record,
        names=tuple(
            name_forms(n.family.strip(), n.given.strip())
            for n in record.names
            if n.family or n.given
        ),
        resident_id=rid,
        resident_id_valid=bool(rid) and resident_id_valid(rid),
        card_no=normalise.identifier(record.card_no or ""),
        phone=normalise.phone(record.phone or ""),
        birth=record.birth_date.strftime("%Y%m%d") if record.birth_date else "",
        gender=record.gender if record.gender in ("male", "female") else "",
        address=address,
        address_grams=bigrams(address),
        locality=_address_key(record.locality or ""),
        postal_code=normalise.identifier(record.postal_code or ""),
        identifiers={i.system: normalise.identifier(i.value) for i in record.identifiers},
    )


def _address_key(text: str) -> str:
    return _ADDRESS_DROP.sub("", unicodedata.normalize("NFKC", text)).lower()


# --- names -------------------------------------------------------------------------------


def compare_name(a: Prepared, b: Prepared, latin_is_pinyin: bool) -> str | None:
    if not a.names or not b.names:
        return None
    order = ("exact", "hanzi_typo", "pinyin", "pinyin_typo", "disagree")
    best = 4
    for x in a.names:
        for y in b.names:
            best = min(best, order.index(_name_level(x, y, latin_is_pinyin)))
            if best == 0:
                return "exact"
    return order[best]


def _name_level(x: NameForms, y: NameForms, latin_is_pinyin: bool) -> str:
    if x.hanzi and y.hanzi:
        if x.hanzi == y.hanzi:
            return "exact"
        if x.full_pinyin & y.full_pinyin:
            return "pinyin"
        if _hanzi_typo(x.hanzi, y.hanzi):
            return "hanzi_typo"
    elif x.full_pinyin & y.full_pinyin:
        both_latin = not x.hanzi and not y.hanzi
        return "exact" if both_latin and not latin_is_pinyin else "pinyin"
    if _best_jw(x.full_pinyin, y.full_pinyin) >= _NAME_SIMILAR:
        return "pinyin_typo"
    return "disagree"


def _hanzi_typo(x: str, y: str) -> bool:
    # In a two-character name one different character is a different given name (siblings
    # 张伟 / 张强), not a typo: only longer names can carry a typo and stay recognisable.
    return min(len(x), len(y)) >= 3 and one_edit_apart(x, y)


def _best_jw(a: frozenset[str], b: frozenset[str]) -> float:
    best = 0.0
    for s in a:
        for t in b:
            best = max(best, jaro_winkler(s, t))
    return best


def _part_level(x: str, y: str, x_py: tuple[str, ...], y_py: tuple[str, ...]) -> str:
    if x and y and x == y:
        return "exact"
    if set(x_py) & set(y_py):
        return "exact" if not (has_hanzi(x) or has_hanzi(y)) else "similar"
    jw = max(jaro_winkler(s, t) for s in x_py for t in y_py)
    if jw >= _NAME_SIMILAR:
        return "similar"
    if jw >= _NAME_PARTIAL:
        return "partial"
    return "disagree"


def compare_family(a: Prepared, b: Prepared) -> str | None:
    return _parts(a, b, lambda n: (n.family_hanzi or n.family_pinyin[0], n.family_pinyin))


def compare_given(a: Prepared, b: Prepared) -> str | None:
    return _parts(a, b, lambda n: (n.given_hanzi or n.given_pinyin[0], n.given_pinyin))


def _parts(
    a: Prepared, b: Prepared, part: Callable[[NameForms], tuple[str, tuple[str, ...]]]
) -> str | None:
    order = ("exact", "similar", "partial", "disagree")
    best: int | None = None
    for x in a.names:
        xs, xp = part(x)
        if not xs:
            continue
        for y in b.names:
            ys, yp = part(y)
            if not ys:
                continue
            level = order.index(_part_level(xs, ys, xp, yp))
            best = level if best is None else min(best, level)
    return None if best is None else order[best]


# --- dates, codes, numbers -------------------------------------------------------------------


def compare_birth_date(a: Prepared, b: Prepared) -> str | None:
    x, y = a.birth, b.birth
    if not x or not y:
        return None
    if x == y:
        return "exact"
    if x[:4] == y[:4] and x[4:6] == y[6:8] and x[6:8] == y[4:6]:
        return "swapped"
    if one_edit_apart(x, y) or _one_field_off_by_one(x, y):
        return "typo"
    return "disagree"


def _one_field_off_by_one(x: str, y: str) -> bool:
    # a day or month or year off by one (midnight births, keying from the wrong line)
    try:
        dx = dt.date(int(x[:4]), int(x[4:6]), int(x[6:8]))
        dy = dt.date(int(y[:4]), int(y[4:6]), int(y[6:8]))
    except ValueError:
        return False
    if abs((dx - dy).days) == 1:
        return True
    same = (dx.year == dy.year) + (dx.month == dy.month) + (dx.day == dy.day)
    return same == 2 and (abs(dx.year - dy.year) == 1 or abs(dx.month - dy.month) == 1)


def compare_gender(a: Prepared, b: Prepared) -> str | None:
    if not a.gender or not b.gender:
        return None
    return "agree" if a.gender == b.gender else "disagree"


def _code(x: str, y: str) -> str | None:
    if not x or not y:
        return None
    if x == y:
        return "exact"
    return "typo" if len(x) == len(y) and one_edit_apart(x, y) else "disagree"


def compare_phone(a: Prepared, b: Prepared) -> str | None:
    return _code(a.phone, b.phone)


def compare_postal_code(a: Prepared, b: Prepared) -> str | None:
    return _code(a.postal_code, b.postal_code)


def compare_resident_id(a: Prepared, b: Prepared) -> str | None:
    return _code(a.resident_id, b.resident_id)


def compare_identifier(a: Prepared, b: Prepared, system: str) -> str | None:
    return _code(a.identifiers.get(system, ""), b.identifiers.get(system, ""))


def compare_address(a: Prepared, b: Prepared) -> str | None:
    if not a.address or not b.address:
        return None
    if a.address == b.address:
        return "exact"
    return "similar" if dice(a.address_grams, b.address_grams) >= _ADDRESS_SIMILAR else "disagree"


def compare_locality(a: Prepared, b: Prepared) -> str | None:
    if not a.locality or not b.locality:
        return None
    return "agree" if a.locality == b.locality else "disagree"


COMPARATORS: dict[str, Callable[[Prepared, Prepared], str | None]] = {
    "family_name": compare_family,
    "given_name": compare_given,
    "birth_date": compare_birth_date,
    "gender": compare_gender,
    "phone": compare_phone,
    "address": compare_address,
    "locality": compare_locality,
    "postal_code": compare_postal_code,
    "resident_id": compare_resident_id,
}
