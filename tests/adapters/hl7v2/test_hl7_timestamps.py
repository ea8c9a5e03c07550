"""HL7 date/times to FHIR: precision kept, sender offset applied, invalid dates refused."""

from __future__ import annotations

import pytest

from adapters.hl7v2.timestamps import (
    InvalidTimestamp,
    check,
    normalise_offset,
    to_date,
    to_datetime,
    to_instant,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", "2024"),
        ("202403", "2024-03"),
        ("20240315", "2024-03-15"),
        ("2024031510", "2024-03-15T10:00:00+08:00"),
        ("202403151030", "2024-03-15T10:30:00+08:00"),
        ("20240315103045", "2024-03-15T10:30:45+08:00"),
        ("20240315103045.1234", "2024-03-15T10:30:45.1234+08:00"),
        ("20240315103045-0500", "2024-03-15T10:30:45-05:00"),
        ("198908181126+0215", "1989-08-18T11:26:00+02:15"),
    ],
)
def test_datetime_keeps_precision_and_takes_the_sender_offset(value: str, expected: str) -> None:
    assert to_datetime(value, "+08:00") == expected


@pytest.mark.parametrize(
    "value", ["196203520", "20240230", "20241301", "2024031525", "202403151060", "2024-03-15", "x"]
)
def test_invalid_dates_are_refused(value: str) -> None:
    assert check(value) is not None
    with pytest.raises(InvalidTimestamp):
        to_datetime(value, "+08:00")


def test_date_and_instant() -> None:
    assert to_date("199001010830+0800") == "1990-01-01"
    assert to_instant("20240315", "+08:00") == "2024-03-15T00:00:00+08:00"
    assert normalise_offset("+0800") == normalise_offset("+08:00") == "+08:00"
    with pytest.raises(InvalidTimestamp):
        normalise_offset("+2500")
