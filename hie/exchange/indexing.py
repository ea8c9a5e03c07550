"""Search-index rows for a resource about to be written.

The core indexes ``identifier`` and ``_source`` on every type (enough for conditional
operations and for the HL7 adapter's per-message Provenance); the search work replaces
this with extraction derived from the R4 SearchParameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hie.storage.ports import TokenRow


class IdentifierIndexer:
    def tokens(self, resource: Mapping[str, Any]) -> Sequence[TokenRow]:
        value = resource.get("identifier")
        items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        rows = []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("value"), str):
                system = item.get("system")
                rows.append(
                    TokenRow(
                        "identifier", system if isinstance(system, str) else None, item["value"]
                    )
                )
        source = (resource.get("meta") or {}).get("source")
        if isinstance(source, str):
            rows.append(TokenRow("_source", None, source))
        return rows
