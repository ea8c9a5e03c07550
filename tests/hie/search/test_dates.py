"""Date ranges and the prefix semantics, checked on hand-picked ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hie.search.dates import (
    DATE_MAX,
    DATE_MIN,
    Precision,
    date_predicate,
    from_datetime,
    parse_date,
    to_datetime,
)

DAY = 86_400 * 1_000_000


def r(text: str) -> tuple[int, int]:
    d = parse_date(text, timedelta(0))
    return d.low, d.high


def test_ranges_follow_precision() -> None:
    assert parse_date("2013", timedelta(0)).precision is Precision.YEAR
    jan = from_datetime(datetime(2013, 1, 1, tzinfo=UTC))
    feb = from_datetime(datetime(2013, 2, 1, tzinfo=UTC))
    assert r("2013-01") == (jan, feb - 1)
    assert r("2016-02")[1] - r("2016-02")[0] + 1 == 29 * DAY
    assert r("2013-01-01T00:00:00.5Z")[1] - r("2013-01-01T00:00:00.5Z")[0] == 99_999
    assert r("2013-01-01T00:00:00.123456789Z")[1] == r("2013-01-01T00:00:00.123456789Z")[0]


def test_offsets() -> None:
    plus8 = parse_date("2013-01-01T08:00:00+08:00")
    assert plus8.low == from_datetime(datetime(2013, 1, 1, tzinfo=UTC))
    assert parse_date("2013-01-01").low == plus8.low - 8 * 3600 * 1_000_000  # local +08:00
    minus = parse_date("2013-01-01T00:00:00-05:00")
    assert to_datetime(minus.low) == datetime(2013, 1, 1, 5, tzinfo=UTC)


def test_bounds_are_clamped() -> None:
    assert parse_date("0001").low == DATE_MIN
    assert parse_date("9999-12-31", timedelta(hours=-8)).high == DATE_MAX


@pytest.mark.parametrize(
    "bad",
    ["", "2013-1", "2013-00", "2013-02-29", "2013-01-01T24:00", "2013-01-01T10:00+15:00", "x"],
)
def test_bad_dates(bad: str) -> None:
    with pytest.raises(ValueError, match=r"not a FHIR date|out of range"):
        parse_date(bad)


# Target ranges around the search value 2013-01-14 (a whole day).
Q = parse_date("2013-01-14", timedelta(0))
INSIDE = r("2013-01-14T10:00:00Z")
EQUAL = r("2013-01-14")
BEFORE = r("2013-01-10")
AFTER = r("2013-01-20")
OVERLAP_START = (r("2013-01-13")[0], r("2013-01-14T12:00:00Z")[1])
OVERLAP_END = (r("2013-01-14T12:00:00Z")[0], r("2013-01-15")[1])
SPANNING = (r("2013-01-01")[0], r("2013-01-31")[1])
OPEN_END = (r("2013-01-14T12:00:00Z")[0], DATE_MAX)

CASES = {
    # prefix: targets that match, per the R4 search page definitions
    "eq": {"INSIDE", "EQUAL"},
    "ne": {"BEFORE", "AFTER", "OVERLAP_START", "OVERLAP_END", "SPANNING", "OPEN_END"},
    "gt": {"AFTER", "OVERLAP_END", "SPANNING", "OPEN_END"},
    "lt": {"BEFORE", "OVERLAP_START", "SPANNING"},
    "ge": {"INSIDE", "EQUAL", "AFTER", "OVERLAP_END", "SPANNING", "OPEN_END"},
    "le": {"INSIDE", "EQUAL", "BEFORE", "OVERLAP_START", "SPANNING"},
    "sa": {"AFTER"},
    "eb": {"BEFORE"},
}
TARGETS = {
    "INSIDE": INSIDE,
    "EQUAL": EQUAL,
    "BEFORE": BEFORE,
    "AFTER": AFTER,
    "OVERLAP_START": OVERLAP_START,
    "OVERLAP_END": OVERLAP_END,
    "SPANNING": SPANNING,
    "OPEN_END": OPEN_END,
}


@pytest.mark.parametrize("prefix", sorted(CASES))
def test_prefix_semantics(prefix: str) -> None:
    pred = date_predicate(prefix, Q, now_us=0)
    matched = {name for name, (lo, hi) in TARGETS.items() if pred.matches(lo, hi)}
    assert matched == CASES[prefix]


def test_approximately() -> None:
    now = from_datetime(datetime(2023, 1, 14, tzinfo=UTC))  # ten years after the search value
    pred = date_predicate("ap", Q, now)
    # 10% of ten years is about a year either side.
    assert pred.matches(*r("2012-06-01"))
    assert pred.matches(*r("2013-09-01"))
    assert not pred.matches(*r("2010-01-01"))
    # Searching "now": only the value's own range.
    today = date_predicate("ap", Q, (Q.low + Q.high) // 2)
    assert today.matches(*EQUAL)
    assert not today.matches(*AFTER)


def test_open_low_bound() -> None:
    pred = date_predicate("lt", Q, 0)
    assert pred.matches(None, None)
    assert not date_predicate("sa", Q, 0).matches(None, 5)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_roundtrip(moment: datetime) -> None:
    text = moment.replace(tzinfo=UTC).isoformat()
    d = parse_date(text)
    assert to_datetime(d.low) == moment.replace(tzinfo=UTC)
    assert date_predicate("eq", d, 0).matches(d.low, d.high)
    assert not date_predicate("ne", d, 0).matches(d.low, d.high)
