"""What the DICOM adapter needs from the rest of hie: the shared FHIR record.

``hie.exchange.Exchange`` satisfies :class:`Records`; tests use an in-memory twin. Every
write of Patient, ImagingStudy or Endpoint and every read of ServiceRequest goes through
it, so consent and audit apply to imaging as to any other record.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from hie.context import RequestContext


class Records(Protocol):
    def transaction(self, ctx: RequestContext, bundle: dict[str, Any]) -> dict[str, Any]:
        """A FHIR R4 transaction, atomic.

        Must support conditional update (``PUT Type?identifier=sys|val``: create if none,
        update if one), ``POST`` with ``ifNoneExist``, ``urn:uuid:`` references between
        entries, and conditional references.
        """
        ...

    def search_resources(
        self, ctx: RequestContext, resource_type: str, params: list[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Matching resources; at least ``identifier=sys|val`` and ``_id``."""
        ...

    def visible_study_uids(self, ctx: RequestContext, study_uids: Collection[str]) -> set[str]:
        """The subset of Study Instance UIDs that ``ctx`` may see (the consent filter).

        Called on every read path: C-FIND, C-MOVE, C-GET, QIDO-RS and WADO-RS.
        """
        ...
