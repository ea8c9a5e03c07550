"""FHIR dates as ranges of UTC instants (epoch microseconds), and date prefix semantics.

Every FHIR date, dateTime and instant denotes a range set by its precision:
``2013`` is the whole year, ``2013-01`` the whole month, ``2013-01-05T10:00`` that
minute. A value is stored and searched as ``[low, high]``: both inclusive, integers,
microseconds since 1970-01-01T00:00Z. Values without an offset (dates, and the rare
dateTime without one) are read in the server's local offset (+08:00 by default), so a
date search and a dateTime in the same city agree.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hie.search.predicates import Predicate, overlap_predicate, range_predicate

US = 1_000_000
DAY_US = 86_400 * US
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# The bounds of representable instants; open Period ends are stored as these.
DATE_MIN = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * DAY_US
DATE_MAX = (date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * DAY_US - 1
DEFAULT_OFFSET = timedelta(hours=8)


class Precision(enum.IntEnum):
    YEAR = 1
    MONTH = 2
    DAY = 3
    MINUTE = 4
    SECOND = 5
    FRACTION = 6


@dataclass(frozen=True, slots=True)
class DateRange:
    """The instants a date value covers, inclusive, in epoch microseconds (UTC)."""

    low: int
    high: int
    precision: Precision


_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def parse_date(text: str, default_offset: timedelta = DEFAULT_OFFSET) -> DateRange:
    """Parse a FHIR date/dateTime/instant (or a search date) into its range.

    Raises ``ValueError`` with a reason for anything that is not a valid date.
    """
    low, high, precision = date_bounds(text, int(default_offset.total_seconds()))
    return DateRange(low, high, Precision(precision))


_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (proleptic Gregorian), without building a date object."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@functools.lru_cache(maxsize=8192)
def date_bounds(text: str, default_offset_s: int) -> tuple[int, int, int]:
    """``(low, high, precision)`` of a FHIR date: the hot path of :func:`parse_date`.

    Cached: resources written together share timestamps (an encounter's observations,
    a message's segments), and the result is an immutable tuple.
    """
    m = _DATE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a FHIR date (YYYY[-MM[-DD[Thh:mm[:ss[.f]][tz]]]])")
    ys, mos, ds, hs, mis, ss, fs, tz = m.groups()
    year = int(ys)
    month = int(mos) if mos else 1
    day = int(ds) if ds else 1
    if year < 1 or not 1 <= month <= 12:
        raise ValueError(f"{text!r}: month out of range")
    month_days = 29 if month == 2 and _leap(year) else _DAYS_IN_MONTH[month]
    if not 1 <= day <= month_days:
        raise ValueError(f"{text!r}: day out of range")
    days = _days_from_civil(year, month, day)
    if hs is None:
        base = (days * 86_400 - default_offset_s) * US
        if ds:
            return _bounds(base, base + DAY_US - 1, 3)
        if mos:
            return _bounds(base, base + month_days * DAY_US - 1, 2)
        span = 366 if _leap(year) else 365
        return _bounds(base, base + span * DAY_US - 1, 1)
    hour, minute = int(hs), int(mis)
    second = int(ss) if ss else 0
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"{text!r}: time out of range")
    second = min(second, 59)  # a leap second is read as the second before it
    if tz is None:
        offset = default_offset_s
    elif tz == "Z":
        offset = 0
    else:
        th, tm = int(tz[1:3]), int(tz[4:6])
        if th > 14 or tm > 59:
            raise ValueError(f"{text!r}: offset out of range")
        offset = (th * 3600 + tm * 60) * (-1 if tz[0] == "-" else 1)
    base = (days * 86_400 + hour * 3600 + minute * 60 + second - offset) * US
    if fs:
        digits = fs[:6]
        low = base + int(digits.ljust(6, "0"))
        return _bounds(low, low + 10 ** (6 - len(digits)) - 1, 6)
    if ss:
        return _bounds(base, base + US - 1, 5)
    return _bounds(base, base + 60 * US - 1, 4)


def _bounds(low: int, high: int, precision: int) -> tuple[int, int, int]:
    return (low if low > DATE_MIN else DATE_MIN, high if high < DATE_MAX else DATE_MAX, precision)


def to_datetime(us: int) -> datetime:
    """An epoch-microsecond instant as an aware UTC datetime (for display and SQL)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def from_datetime(moment: datetime) -> int:
    """An aware datetime as epoch microseconds."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def date_predicate(prefix: str, q: DateRange, now_us: int) -> Predicate:
    """Which stored ranges ``[low, high]`` match ``prefix`` + the search range ``q``.

    ``ap`` (approximately) widens the search range by 10% of its distance from now,
    at least by the range itself (the R4 page leaves the amount to the server), and
    asks for overlap.
    """
    if prefix == "ap":
        middle = (q.low + q.high) // 2
        slack = abs(now_us - middle) // 10
        return overlap_predicate(max(q.low - slack, DATE_MIN), min(q.high + slack, DATE_MAX))
    return range_predicate(prefix, q.low, q.high)
