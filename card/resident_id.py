"""Resident ID numbers (公民身份号码, GB 11643-1999).

Layout of the 18-character number::

    510703 19800101 123 4
    region birth    seq check

* region: a GB/T 2260 county-level code. A number keeps the code it was issued with for
  life, so a code abolished after the holder's birth stays valid (Mianyang's 510702 市中区,
  abolished in 1992, on a person born in 1985), and a code created after the birth is valid
  too: numbers were first issued at age 16 or later, so a person born in 1980 can hold
  Fucheng's 510703, created in 1992. Only a code abolished *before* the birth year is
  impossible. The code table with validity years is python-stdnum's ``cn/loc.dat``
  (derived from the zh.wikipedia lists of GB/T 2260 codes since 1980); we read its data
  but apply our own validity rule, because ``stdnum.cn.ric.validate`` rejects codes created
  after the birth year and raises KeyError on some inputs.
* birth date: YYYYMMDD, a real date, not in the future (the caller passes ``today``).
* sequence: three digits; odd for men, even for women.
* check: ISO 7064 MOD 11-2 over the first 17 digits; ``x`` and ``X`` are the same.

Legacy 15-digit numbers (GB 11643-1989) have a 2-digit year and no check character;
:func:`upgrade_legacy` converts them the official way (century 19, or 18 for the sequence
codes 996-999 that the 1989 standard reserved for centenarians).

Every failure raises :class:`ResidentIdError` whose ``problem`` is a stable machine code
(:class:`Problem`) and whose message names the exact fault, e.g. "check digit should be 7".
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import importlib.resources
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "Problem",
    "RegionPeriod",
    "RegionTable",
    "ResidentId",
    "ResidentIdError",
    "Sex",
    "check_character",
    "default_regions",
    "is_valid",
    "normalise",
    "parse",
    "upgrade_legacy",
]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_EARLIEST_BIRTH_YEAR = 1850
_SEPARATORS = re.compile(r"[\s\-]")
_DIGITS = re.compile(r"[0-9]+")
# Residence permits for Hong Kong, Macao and Taiwan residents (since 2018) use these
# province-level codes; 830000 is absent from the GB/T 2260 lists.
_PERMIT_REGIONS = {
    "810000": "香港特别行政区居民居住证",
    "820000": "澳门特别行政区居民居住证",
    "830000": "台湾地区居民居住证",
}


class Problem(enum.StrEnum):
    """Stable machine codes, one per kind of fault."""

    EMPTY = "empty"
    LENGTH = "length"
    FORMAT = "format"
    REGION_UNKNOWN = "region-unknown"
    REGION_ABOLISHED = "region-abolished"
    BIRTH_DATE_INVALID = "birth-date-invalid"
    BIRTH_DATE_FUTURE = "birth-date-future"
    BIRTH_DATE_TOO_EARLY = "birth-date-too-early"
    CHECK_DIGIT = "check-digit"


class ResidentIdError(ValueError):
    """A resident ID number is not valid; ``problem`` says why, ``str()`` says exactly."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


class Sex(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"


@dataclass(frozen=True, slots=True)
class RegionPeriod:
    """One name a region code carried, with the years it was in force (None: open)."""

    name: str
    start: int | None
    end: int | None


@dataclass(frozen=True, slots=True)
class ResidentId:
    """A validated resident ID number."""

    number: str  # normalised: 18 characters, upper-case X
    region_code: str
    region_name: str  # the name in force at birth, or the earliest name if issued later
    province: str
    birth_date: dt.date
    sequence: str
    sex: Sex
    upgraded_from: str | None = None  # the 15-digit original, if it was converted

    def __str__(self) -> str:
        return self.number


class RegionTable:
    """GB/T 2260 region codes with the years each was in force."""

    def __init__(
        self,
        regions: Mapping[str, tuple[RegionPeriod, ...]],
        provinces: Mapping[str, str],
    ) -> None:
        self._regions = dict(regions)
        self._provinces = dict(provinces)

    def __contains__(self, code: object) -> bool:
        return code in self._regions

    def __len__(self) -> int:
        return len(self._regions)

    def periods(self, code: str) -> tuple[RegionPeriod, ...]:
        return self._regions.get(code, ())

    def province(self, code: str) -> str:
        return self._provinces.get(code[:2], "")

    def name_for_birth_year(self, code: str, year: int) -> str | None:
        """The region's name for a holder born in ``year``, None if impossible.

        A code is possible when it was still in force in the birth year or later
        (numbers were issued at or after birth, and are kept for life).
        """
        periods = self._regions.get(code)
        if not periods:
            return None
        possible = [p for p in periods if p.end is None or p.end >= year]
        if not possible:
            return None
        in_force = [p for p in possible if p.start is None or p.start <= year]
        return (in_force or possible)[0].name

    @classmethod
    def from_stdnum_loc(cls, text: str) -> RegionTable:
        """Parse python-stdnum's ``cn/loc.dat`` ("51 province=..." / "  0703 county=...")."""
        regions: dict[str, tuple[RegionPeriod, ...]] = {}
        provinces: dict[str, str] = {}
        province = ""
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            code, _, props = line.strip().partition(" ")
            value = _prop_value(props)
            if not line.startswith(" "):
                province = code
                provinces[code] = value
            else:
                regions[province + code] = _parse_periods(value)
        for code, name in _PERMIT_REGIONS.items():
            regions[code] = (RegionPeriod(name, 2018, None),)
        return cls(regions, provinces)


def _prop_value(props: str) -> str:
    _, _, quoted = props.partition("=")
    return quoted.strip().strip('"')


_PERIOD = re.compile(r"^\[(\d{4})?-(\d{4})?\](.*)$")


def _parse_periods(value: str) -> tuple[RegionPeriod, ...]:
    out = []
    for part in value.split(","):
        m = _PERIOD.match(part.strip())
        if m:
            start, end, name = m.groups()
            out.append(RegionPeriod(name, int(start) if start else None, int(end) if end else None))
        else:
            out.append(RegionPeriod(part.strip(), None, None))
    return tuple(out)


@functools.cache
def default_regions() -> RegionTable:
    """The region table bundled with python-stdnum (parsed once; immutable)."""
    data = importlib.resources.files("stdnum").joinpath("cn", "loc.dat")
    return RegionTable.from_stdnum_loc(data.read_text(encoding="utf-8"))


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def normalise(value: str) -> str:
    """NFKC (full-width digits), no spaces or hyphens, upper-case X; no validation."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).upper()


def _is_digits(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None


def upgrade_legacy(number15: str) -> str:
    """Convert a 15-digit legacy number to 18 characters (structure is checked, not dates)."""
    n = normalise(number15)
    if len(n) != 15 or not _is_digits(n):
        raise ResidentIdError(Problem.FORMAT, f"a legacy number has 15 digits, not {n!r}")
    century = "18" if n[12:15] in ("996", "997", "998", "999") else "19"
    first17 = n[:6] + century + n[6:]
    return first17 + check_character(first17)


def parse(
    value: str,
    *,
    today: dt.date,
    regions: RegionTable | None = None,
) -> ResidentId:
    """Validate a resident ID number (18 or legacy 15 characters) and return its parts."""
    table = regions if regions is not None else default_regions()
    raw = normalise(value)
    if not raw:
        raise ResidentIdError(Problem.EMPTY, "resident ID number is empty")
    if len(raw) not in (15, 18):
        raise ResidentIdError(
            Problem.LENGTH, f"resident ID number has {len(raw)} characters, expected 18 (or 15)"
        )
    upgraded_from = None
    if len(raw) == 15:
        if not _is_digits(raw):
            raise ResidentIdError(Problem.FORMAT, _bad_chars(raw))
        upgraded_from = raw
        number = upgrade_legacy(raw)
    else:
        number = raw
        if not _is_digits(number[:17]) or number[17] not in "0123456789X":
            raise ResidentIdError(Problem.FORMAT, _bad_chars(number))

    digits = number[6:14]
    try:
        birth = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        shown = upgraded_from[6:12] if upgraded_from else digits
        raise ResidentIdError(
            Problem.BIRTH_DATE_INVALID, f"birth date {shown} is not a date"
        ) from None
    if birth > today:
        raise ResidentIdError(Problem.BIRTH_DATE_FUTURE, f"birth date {digits} is in the future")
    if birth.year < _EARLIEST_BIRTH_YEAR:
        raise ResidentIdError(
            Problem.BIRTH_DATE_TOO_EARLY, f"birth date {digits} is before {_EARLIEST_BIRTH_YEAR}"
        )

    code = number[:6]
    if code not in table:
        raise ResidentIdError(Problem.REGION_UNKNOWN, f"region code {code} is not a known region")
    region_name = table.name_for_birth_year(code, birth.year)
    if region_name is None:
        last = max(p.end for p in table.periods(code) if p.end is not None)
        raise ResidentIdError(
            Problem.REGION_ABOLISHED,
            f"region code {code} was abolished in {last}, before the birth year {birth.year}",
        )

    expected = check_character(number[:17])
    if upgraded_from is None and number[17] != expected:
        raise ResidentIdError(Problem.CHECK_DIGIT, f"check digit should be {expected}")

    sequence = number[14:17]
    return ResidentId(
        number=number,
        region_code=code,
        region_name=region_name,
        province=table.province(code),
        birth_date=birth,
        sequence=sequence,
        sex=Sex.MALE if int(sequence) % 2 else Sex.FEMALE,
        upgraded_from=upgraded_from,
    )


def is_valid(value: str, *, today: dt.date, regions: RegionTable | None = None) -> bool:
    try:
        parse(value, today=today, regions=regions)
    except ResidentIdError:
        return False
    return True


def _bad_chars(n: str) -> str:
    for i, ch in enumerate(n):
        last = i == 17
        if not (ch in "0123456789" or (last and ch == "X")):
            where = "check character" if last else f"position {i + 1}"
            allowed = "a digit or X" if last else "a digit"
            return f"resident ID number has {ch!r} at {where}; expected {allowed}"
    return "resident ID number is malformed"
