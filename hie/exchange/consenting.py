"""What the consent decision point reads of the record, in the caller's unit of work.

Nothing is cached: each decision reads the Consents in force now (hie.consent.point).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import orjson

from hie.consent.shapes import SHAPE_PARAM
from hie.storage.ports import UnitOfWork


class ConsentFacts:
    """The consent point's view of the record: Consents read in the caller's unit of work."""

    _CHUNK = 200

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def consents(self, patients: Collection[str]) -> list[Mapping[str, Any]]:
        # Only active privacy Consents carry a shape row, so the shape marks them.
        ids = sorted(patients)
        out: list[Mapping[str, Any]] = []
        for start in range(0, len(ids), self._CHUNK):
            chunk = ids[start : start + self._CHUNK]
            found = self._uow.referring("Consent", "patient", "Patient", chunk, SHAPE_PARAM)
            out += [orjson.loads(s.content) for s in found]
        return out

    def holders(self, patients: Collection[str]) -> set[str]:
        found = (self._uow.get("Patient", p) for p in sorted(patients))
        return {s.custodian for s in found if s is not None and s.custodian and not s.deleted}

    def linking(self, patients: Collection[str]) -> set[str]:
        found = self._uow.referring("Patient", "link", "Patient", sorted(patients))
        return {s.id for s in found}

    def shapes(self) -> list[tuple[str, Mapping[str, Any]]]:
        found = self._uow.token_values("Consent", SHAPE_PARAM)
        return [(shape, orjson.loads(s.content)) for shape, s in found]
