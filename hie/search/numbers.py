"""Numbers and quantities: implicit precision, prefix semantics and simple UCUM canonical forms.

A search number carries its precision: ``100`` means ``[99.5, 100.5)``, ``100.0``
means ``[99.95, 100.05)`` (R4 search page, "number"). Stored numbers are exact points,
kept as a range ``low == high`` so a Range (``Range.low .. Range.high``) fits the same
row; ``eq`` asks whether the stored range lies inside the search range, ``gt``/``lt``
compare with the search value itself.

Quantities in UCUM are also stored in a canonical unit when the unit is simple (a
metric prefix on a base unit, a time unit, or a ratio of two such units), so
``5.4|http://unitsofmeasure.org|mg`` finds ``0.0054 g``.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation

from hie.search.predicates import Predicate, overlap_predicate, range_predicate

UCUM = "http://unitsofmeasure.org"
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_decimal(text: str) -> Decimal:
    """A FHIR decimal; ``ValueError`` for anything else (no NaN, no infinities)."""
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{text!r} is not a number")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{text!r} is not a number") from exc


def precision_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """``[low, high)`` of the values that round to ``value`` at its written precision."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal((0, (5,), exponent - 1))
    return value - half, value + half


def number_predicate(prefix: str, value: Decimal) -> Predicate:
    """Which stored ranges ``[low, high]`` match ``prefix`` + ``value``."""
    if prefix in ("eq", "ne"):
        low, high = precision_range(value)
        return range_predicate(prefix, low, high, high_inclusive=False)
    if prefix == "ap":
        slack = abs(value) / 10
        low, high = precision_range(value)
        return overlap_predicate(min(low, value - slack), max(high, value + slack))
    return range_predicate(prefix, value, value)


# -- UCUM canonical units (the simple cases) ------------------------------------------

_PREFIXES = {
    "Y": Decimal("1e24"),
    "Z": Decimal("1e21"),
    "E": Decimal("1e18"),
    "P": Decimal("1e15"),
    "T": Decimal("1e12"),
    "G": Decimal("1e9"),
    "M": Decimal("1e6"),
    "k": Decimal("1e3"),
    "h": Decimal("1e2"),
    "da": Decimal("1e1"),
    "d": Decimal("1e-1"),
    "c": Decimal("1e-2"),
    "m": Decimal("1e-3"),
    "u": Decimal("1e-6"),
    "n": Decimal("1e-9"),
    "p": Decimal("1e-12"),
    "f": Decimal("1e-15"),
}
# Base units that take metric prefixes, with the canonical unit they are expressed in.
_METRIC = {
    "g": "g",
    "m": "m",
    "L": "L",
    "l": "L",
    "s": "s",
    "mol": "mol",
    "eq": "eq",
    "U": "U",
    "[iU]": "[iU]",
    "[IU]": "[iU]",
    "Pa": "Pa",
    "Hz": "Hz",
    "kat": "kat",
    "J": "J",
    "W": "W",
    "V": "V",
    "A": "A",
    "Cel": "Cel",
    "K": "K",
    "cal": "cal",
    "osm": "osm",
}
# Units that do not take prefixes, with their factor to the canonical unit.
_FIXED = {
    "min": (Decimal(60), "s"),
    "h": (Decimal(3600), "s"),
    "d": (Decimal(86400), "s"),
    "wk": (Decimal(604800), "s"),
    "mo": (Decimal("2629800"), "s"),  # mean Julian month
    "a": (Decimal("31557600"), "s"),  # mean Julian year
    "mm[Hg]": (Decimal("133.322"), "Pa"),
    "%": (Decimal(1), "%"),
    "1": (Decimal(1), "1"),
    "[lb_av]": (Decimal("453.59237"), "g"),
    "[in_i]": (Decimal("0.0254"), "m"),
    "[ft_i]": (Decimal("0.3048"), "m"),
    "[degF]": (Decimal(1), "[degF]"),
}
_ANNOTATION = re.compile(r"\{[^}]*\}")


def _unit(term: str) -> tuple[Decimal, str] | None:
    term = _ANNOTATION.sub("", term) or "1"
    if term in _FIXED:
        return _FIXED[term]
    if term in _METRIC:
        return Decimal(1), _METRIC[term]
    m = re.fullmatch(r"(.+?)(\d+)", term)
    if m and not m.group(1).startswith("["):
        base = _unit(m.group(1))
        if base is None:
            return None
        power = int(m.group(2))
        return base[0] ** power, base[1] if power == 1 else f"{base[1]}{power}"
    for size in (2, 1):
        prefix, rest = term[:size], term[size:]
        if prefix in _PREFIXES and rest in _METRIC:
            return _PREFIXES[prefix], _METRIC[rest]
    return None


@functools.lru_cache(maxsize=4096)
def ucum_canonical(code: str) -> tuple[Decimal, str] | None:
    """``(factor, canonical code)`` for a simple UCUM code, else ``None``.

    ``mg`` -> ``(0.001, "g")``; ``mg/dL`` -> ``(0.01, "g/L")``; ``/min`` -> ``(1/60, "/s")``.
    """
    if not code or " " in code or code.count("/") > 1:
        return None
    if "/" in code:
        num, den = code.split("/")
        top = _unit(num) if num else (Decimal(1), "")
        bottom = _unit(den)
        if top is None or bottom is None:
            return None
        return top[0] / bottom[0], f"{top[1] if top[1] != '1' else ''}/{bottom[1]}"
    return _unit(code)
