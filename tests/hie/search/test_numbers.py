"""Number precision, number prefixes and UCUM canonical units."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hie.search.numbers import number_predicate, parse_decimal, precision_range, ucum_canonical


def d(text: str) -> Decimal:
    return Decimal(text)


def test_precision_range() -> None:
    assert precision_range(d("100")) == (d("99.5"), d("100.5"))
    assert precision_range(d("100.0")) == (d("99.95"), d("100.05"))
    assert precision_range(d("1e2")) == (d("50"), d("150"))
    assert precision_range(d("0.25")) == (d("0.245"), d("0.255"))


@pytest.mark.parametrize(
    ("prefix", "target", "expected"),
    [
        ("eq", "100", True),
        ("eq", "100.4", True),
        ("eq", "100.5", False),  # [99.5, 100.5)
        ("eq", "99.5", True),
        ("ne", "101", True),
        ("ne", "100", False),
        ("gt", "100.1", True),
        ("gt", "100", False),
        ("ge", "100", True),
        ("lt", "99.9", True),
        ("le", "100", True),
        ("le", "100.1", False),
        ("sa", "101", True),
        ("eb", "99", True),
        ("eb", "100", False),
        ("ap", "109", True),  # within 10%
        ("ap", "111", False),
    ],
)
def test_number_prefixes(prefix: str, target: str, expected: bool) -> None:
    v = d(target)
    assert number_predicate(prefix, d("100")).matches(v, v) is expected


def test_ranges_as_targets() -> None:
    # A Range [1, open) is "greater than 50" and not "less than 0".
    assert number_predicate("gt", d("50")).matches(d("1"), None)
    assert not number_predicate("lt", d("0")).matches(d("1"), None)


@pytest.mark.parametrize("bad", ["", "abc", "1,5", "NaN", "Infinity", "1.2.3", "--1"])
def test_parse_decimal_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        parse_decimal(bad)


@pytest.mark.parametrize(
    ("code", "factor", "canonical"),
    [
        ("mg", "0.001", "g"),
        ("kg", "1000", "g"),
        ("g", "1", "g"),
        ("mg/dL", "0.01", "g/L"),
        ("mmol/L", "0.001", "mol/L"),
        ("min", "60", "s"),
        ("/min", None, "/s"),
        ("mm[Hg]", "133.322", "Pa"),
        ("%", "1", "%"),
        ("{beats}/min", None, "/s"),
        ("cm", "0.01", "m"),
        ("m2", "1", "m2"),
    ],
)
def test_ucum_canonical(code: str, factor: str | None, canonical: str) -> None:
    got = ucum_canonical(code)
    assert got is not None
    assert got[1] == canonical
    if factor is not None:
        assert got[0] == d(factor)


@pytest.mark.parametrize("code", ["", "kg.m/s2", "[foo]", "a b", "mg/dL/h"])
def test_ucum_unknown(code: str) -> None:
    assert ucum_canonical(code) is None
