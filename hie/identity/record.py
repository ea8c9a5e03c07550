"""The matcher's view of a person record: a plain dataclass the exchange maps Patients to."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from hie.identity.names import has_hanzi

__all__ = ["CARD_SOURCE", "Identifier", "PersonName", "PersonRecord"]

CARD_SOURCE = "card"  # the ``source`` of records that come from the card service


@dataclass(frozen=True, slots=True)
class PersonName:
    """A name in Hanzi or Latin (pinyin) script.

    A Hanzi full name may be given whole in ``given`` with ``family`` empty ("张伟"); it is
    split at the surname (compound surnames such as 欧阳 are known).
    """

    family: str = ""
    given: str = ""

    @property
    def text(self) -> str:
        if has_hanzi(self.family + self.given):
            return self.family + self.given
        return f"{self.family} {self.given}".strip()


@dataclass(frozen=True, slots=True)
class Identifier:
    system: str
    value: str


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """One source record of a person (a hospital's Patient, a card holder, ...).

    ``resident_id`` is the normalised 18-character resident ID number (upgrade legacy
    numbers before building the record), ``card_no`` the Mianzhou Pass number, ``phone``
    any form (it is normalised for comparison). ``gender`` uses FHIR codes (male, female,
    other, unknown). ``address`` is the street part, ``locality`` the district/town or suburb.
    ``identifiers`` holds the rest (each hospital's MRN, ...). ``updated_at`` orders records
    for survivorship.
    """

    record_id: str
    source: str
    names: tuple[PersonName, ...] = ()
    birth_date: dt.date | None = None
    gender: str | None = None
    phone: str | None = None
    address: str | None = None
    locality: str | None = None
    postal_code: str | None = None
    resident_id: str | None = None
    card_no: str | None = None
    identifiers: tuple[Identifier, ...] = ()
    updated_at: dt.datetime | None = field(default=None, compare=False)

    def identifier(self, system: str) -> str | None:
        for ident in self.identifiers:
            if ident.system == system:
                return ident.value
        return None
