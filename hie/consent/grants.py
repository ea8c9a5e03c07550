"""Access grants: time-limited permissions for one organisation to see one patient's record.

The card service records a *card-presented* grant when a resident's card is checked in at
an organisation (consent policy rule 2b): for purpose treatment, that organisation may
read the resident's shared record until ``end``. The decision point looks them up with
:meth:`GrantStore.active`. Grants are facts of the past and are never edited; a later
grant simply adds a new period.

``patient`` is a ``Patient/<id>`` reference: the enterprise Patient when the MPI resolves
one (the card service records that), so one grant covers every linked source record.
The SQL store is :class:`hie.storage.sql.grants.SqlGrantStore`; :class:`MemoryGrantStore`
is its twin for pure tests.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

__all__ = [
    "CARD_PRESENTED",
    "TREATMENT",
    "Grant",
    "GrantStore",
    "MemoryGrantStore",
]

CARD_PRESENTED = "card-presented"
# v3 ActReason (PurposeOfUse) code for treatment.
TREATMENT = "TREAT"


@dataclass(frozen=True, slots=True)
class Grant:
    """``organization`` may access ``patient`` for ``purpose`` from ``start`` to ``end``.

    ``basis`` says why (``card-presented``); ``evidence`` names what proves it (the
    check-in Encounter); ``recorded_by`` is the actor that recorded it. ``id`` is set
    by the store.
    """

    patient: str
    organization: str
    purpose: str
    start: datetime
    end: datetime
    basis: str = CARD_PRESENTED
    evidence: str | None = None
    recorded_by: str | None = None
    id: int | None = None

    def active_at(self, at: datetime) -> bool:
        return self.start <= at < self.end


class GrantStore(Protocol):
    def add(self, grant: Grant) -> Grant:
        """Record a grant (committed on return); returns it with its ``id``."""

    def active(
        self,
        patients: Collection[str],
        organization: str,
        at: datetime,
        purpose: str | None = None,
    ) -> list[Grant]:
        """Grants for any of ``patients`` to ``organization`` in force at ``at``
        (of ``purpose`` if given), latest ending first."""

    def granted_patients(
        self, organization: str, at: datetime, purpose: str | None = None
    ) -> set[str]:
        """Every patient ``organization`` holds a grant for at ``at`` (for search filters)."""


class MemoryGrantStore:
    """In-memory twin of the SQL grant store."""

    def __init__(self) -> None:
        self._grants: list[Grant] = []
        self._lock = threading.Lock()

    def add(self, grant: Grant) -> Grant:
        with self._lock:
            stored = replace(grant, id=len(self._grants) + 1)
            self._grants.append(stored)
        return stored

    def active(
        self,
        patients: Collection[str],
        organization: str,
        at: datetime,
        purpose: str | None = None,
    ) -> list[Grant]:
        wanted = set(patients)
        with self._lock:
            found = [
                g
                for g in self._grants
                if g.patient in wanted
                and g.organization == organization
                and (purpose is None or g.purpose == purpose)
                and g.active_at(at)
            ]
        return sorted(found, key=lambda g: g.end, reverse=True)

    def granted_patients(
        self, organization: str, at: datetime, purpose: str | None = None
    ) -> set[str]:
        with self._lock:
            return {
                g.patient
                for g in self._grants
                if g.organization == organization
                and (purpose is None or g.purpose == purpose)
                and g.active_at(at)
            }
