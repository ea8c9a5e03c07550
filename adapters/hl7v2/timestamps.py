"""HL7 DTM/DT/TS values to FHIR date, dateTime and instant.

Precision is kept where FHIR can express it (year, month, day, seconds, fractions). FHIR has
no hour or minute precision, so those are padded with zero minutes/seconds. A value with a
time of day but no offset takes the sender's default offset. A value that is not a real
calendar date raises InvalidTimestamp: never a silently wrong date.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

_DTM = re.compile(
    r"^(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"([+-]\d{4})?$"
)
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


class InvalidTimestamp(ValueError):
    """The value is not an HL7 date/time or not a real calendar date."""


def normalise_offset(offset: str) -> str:
    """``+0800``/``+08:00`` -> ``+08:00``; raises InvalidTimestamp."""
    m = _OFFSET.match(offset.strip())
    if not m or int(m.group(2)) > 14 or int(m.group(3)) > 59:
        raise InvalidTimestamp(f"invalid UTC offset {offset!r}")
    return f"{m.group(1)}{m.group(2)}:{m.group(3)}"


def _split(value: str) -> tuple[list[str | None], str | None]:
    m = _DTM.match(value.strip())
    if not m:
        raise InvalidTimestamp(
            f"{value!r} is not an HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])"
        )
    parts: list[str | None] = list(m.groups()[:7])
    offset = m.group(8)
    year, month, day, hour, minute, second, _ = parts
    try:
        date(int(year or 0), int(month or 1), int(day or 1))
    except ValueError:
        raise InvalidTimestamp(f"{value!r} is not a calendar date") from None
    if hour is not None and int(hour) > 23:
        raise InvalidTimestamp(f"{value!r} has hour {hour}")
    if minute is not None and int(minute) > 59:
        raise InvalidTimestamp(f"{value!r} has minute {minute}")
    if second is not None and int(second) > 59:
        raise InvalidTimestamp(f"{value!r} has second {second}")
    if offset is not None:
        normalise_offset(offset)
    return parts, offset


_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def check(value: str) -> str | None:
    """Why ``value`` is not a valid HL7 date/time, or None when it is (every message's
    dates go through here, so it avoids building datetimes)."""
    m = _DTM.match(value)
    if m is None:
        m = _DTM.match(value.strip())
        if m is None:
            return f"{value!r} is not an HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])"
    year, month, day, hour, minute, second, _, offset = m.groups()
    if month is not None:
        mon = int(month)
        if not 1 <= mon <= 12:
            return f"{value!r} is not a calendar date"
        if day is not None:
            d = int(day)
            y = int(year)
            leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
            limit = 28 if mon == 2 and not leap else _DAYS[mon - 1]
            if not 1 <= d <= limit:
                return f"{value!r} is not a calendar date"
    if hour is not None and int(hour) > 23:
        return f"{value!r} has hour {hour}"
    if minute is not None and int(minute) > 59:
        return f"{value!r} has minute {minute}"
    if second is not None and int(second) > 59:
        return f"{value!r} has second {second}"
    if offset is not None and (int(offset[1:3]) > 14 or int(offset[3:5]) > 59):
        return f"{value!r} has an invalid UTC offset"
    return None


def to_datetime(value: str, default_offset: str) -> str:
    """A FHIR dateTime keeping the value's precision."""
    parts, offset = _split(value)
    year, month, day, hour, minute, second, fraction = parts
    out = year or ""
    if month:
        out += f"-{month}"
    if day:
        out += f"-{day}"
    if hour is None:
        return out
    out += f"T{hour}:{minute or '00'}:{second or '00'}"
    if fraction:
        out += f".{fraction}"
    return out + normalise_offset(offset or default_offset)


def to_date(value: str) -> str:
    """A FHIR date (a birth date sent with a time keeps only its date)."""
    parts, _ = _split(value)
    year, month, day = parts[0], parts[1], parts[2]
    out = year or ""
    if month:
        out += f"-{month}"
    if day:
        out += f"-{day}"
    return out


def to_instant(value: str, default_offset: str) -> str:
    """A FHIR instant: a date-only value means its midnight at the sender's offset."""
    parts, offset = _split(value)
    year, month, day, hour, minute, second, fraction = parts
    out = f"{year}-{month or '01'}-{day or '01'}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    if fraction:
        out += f".{fraction}"
    return out + normalise_offset(offset or default_offset)


def to_aware(value: str, default_offset: str) -> datetime:
    """A timezone-aware datetime (for ordering and comparisons)."""
    parts, offset = _split(value)
    year, month, day, hour, minute, second, fraction = parts
    off = normalise_offset(offset or default_offset)
    sign = 1 if off[0] == "+" else -1
    tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
    micro = int((fraction or "0").ljust(6, "0")[:6])
    return datetime(
        int(year or 0),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=tz,
    )
