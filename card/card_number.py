"""Mianzhou Pass card numbers.

Format: 16 decimal digits, printed in groups of four::

    5107 1 0000000123 C
    |    | |          +-- check digit (Damm algorithm)
    |    | +------------- serial number, 10 digits, issued in order, never reused
    |    +--------------- series: 1 = Mianzhou Pass resident health card
    +-------------------- issuer prefix 5107 (Mianyang's GB/T 2260 prefecture code)

Why this shape:

* 16 digits never look like a resident ID number (18 or 15 characters), so a reader or
  a clerk cannot confuse the two, and digits only suit magnetic stripes, QR payloads and
  phone keypads.
* The Damm check digit detects every single-digit error and every transposition of
  adjacent digits (Luhn, common on bank cards, misses 09<->90). It needs no letter such as
  the X of ISO 7064 MOD 11-2.
* A replacement card gets a new serial: an old number never identifies anyone again.
  10 serial digits allow ten billion cards per series.

Input may contain spaces or hyphens (``5107-1000-0000-1234``); :func:`parse` returns the
compact 16-digit form. Faults raise :class:`CardNumberError` with a stable ``problem``.
"""

from __future__ import annotations

import enum
import re
import unicodedata

__all__ = [
    "ISSUER_PREFIX",
    "LENGTH",
    "SERIES_RESIDENT_CARD",
    "CardNumberError",
    "Problem",
    "check_digit",
    "format_display",
    "is_valid",
    "make",
    "parse",
]

ISSUER_PREFIX = "5107"
SERIES_RESIDENT_CARD = "1"
LENGTH = 16
_SERIAL_DIGITS = 10
_SEPARATORS = re.compile(r"[\s\-]")
_DIGITS = re.compile(r"[0-9]+")

# Damm's totally anti-symmetric quasigroup of order 10 (H. M. Damm, 2004).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


class Problem(enum.StrEnum):
    EMPTY = "empty"
    FORMAT = "format"
    LENGTH = "length"
    ISSUER = "issuer"
    SERIES = "series"
    CHECK_DIGIT = "check-digit"


class CardNumberError(ValueError):
    """A card number is not valid; ``problem`` says why, ``str()`` says exactly."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


def check_digit(digits: str) -> str:
    interim = 0
    for d in digits:
        interim = _DAMM[interim][int(d)]
    return str(interim)


def make(serial: int, *, series: str = SERIES_RESIDENT_CARD) -> str:
    """The card number for a serial (0 <= serial < 10**10)."""
    if not 0 <= serial < 10**_SERIAL_DIGITS:
        raise ValueError(f"serial {serial} does not fit in {_SERIAL_DIGITS} digits")
    if len(series) != 1 or not _DIGITS.fullmatch(series):
        raise ValueError(f"series must be one digit, not {series!r}")
    body = f"{ISSUER_PREFIX}{series}{serial:0{_SERIAL_DIGITS}d}"
    return body + check_digit(body)


def parse(value: str) -> str:
    """Validate a card number and return its compact form."""
    n = _SEPARATORS.sub("", unicodedata.normalize("NFKC", value))
    if not n:
        raise CardNumberError(Problem.EMPTY, "card number is empty")
    if not _DIGITS.fullmatch(n):
        raise CardNumberError(Problem.FORMAT, "card number must contain digits only")
    if len(n) != LENGTH:
        raise CardNumberError(Problem.LENGTH, f"card number has {len(n)} digits, expected {LENGTH}")
    if not n.startswith(ISSUER_PREFIX):
        raise CardNumberError(
            Problem.ISSUER, f"card number must start with {ISSUER_PREFIX}, not {n[:4]}"
        )
    if n[4] != SERIES_RESIDENT_CARD:
        raise CardNumberError(Problem.SERIES, f"card series {n[4]} is not issued")
    expected = check_digit(n[:-1])
    if n[-1] != expected:
        raise CardNumberError(Problem.CHECK_DIGIT, f"check digit should be {expected}")
    return n


def is_valid(value: str) -> bool:
    try:
        parse(value)
    except CardNumberError:
        return False
    return True


def format_display(number: str) -> str:
    """``5107 1000 0000 1234``: groups of four for printing on the card."""
    n = parse(number)
    return " ".join(n[i : i + 4] for i in range(0, LENGTH, 4))
