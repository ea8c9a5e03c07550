"""Survivorship: which source record's value the enterprise (golden) record shows.

The rule, field by field (names, birth date, gender, phone, address, locality, postal code,
resident ID number, card number):

1. Card records (``source == "card"``) win: the card service checked the resident's ID
   document when it issued the card. The most recently updated card record first.
2. Then hospital records, most recently updated first: people move and change numbers, and
   the latest visit has the latest data.
3. A record without a value for a field (no phone, say) does not erase it: the next record in
   this order that has one supplies it.

Records without ``updated_at`` count as oldest; ties keep the input order.
Identifiers (MRNs and the like) are not chosen but collected: the golden record lists all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from hie.identity.record import CARD_SOURCE, PersonRecord

__all__ = ["golden_record", "survivorship_order"]

_OLDEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def survivorship_order(records: Sequence[PersonRecord]) -> list[PersonRecord]:
    """Card records first, then the rest; each group most recently updated first."""

    def when(r: PersonRecord) -> dt.datetime:
        return _OLDEST if r.updated_at is None else _aware(r.updated_at)

    indexed = list(enumerate(records))
    indexed.sort(key=lambda ir: (ir[1].source != CARD_SOURCE, -when(ir[1]).timestamp(), ir[0]))
    return [r for _, r in indexed]


def golden_record(record_id: str, records: Sequence[PersonRecord]) -> PersonRecord:
    """The enterprise record's demographics from its linked source records."""
    if not records:
        raise ValueError("a golden record needs at least one source record")
    ordered = survivorship_order(records)

    def first(name: str) -> Any:
        return next((v for r in ordered if (v := getattr(r, name))), None)

    identifiers = dict.fromkeys(i for r in ordered for i in r.identifiers)
    latest = max((_aware(r.updated_at) for r in records if r.updated_at), default=None)
    return PersonRecord(
        record_id=record_id,
        source="enterprise",
        names=first("names") or (),
        birth_date=first("birth_date"),
        gender=first("gender"),
        phone=first("phone"),
        address=first("address"),
        locality=first("locality"),
        postal_code=first("postal_code"),
        resident_id=first("resident_id"),
        card_no=first("card_no"),
        identifiers=tuple(identifiers),
        updated_at=latest,
    )


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
