"""What the adapter needs from the rest of hie, as protocols (the lead wires the real ones)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Engine

from adapters.hl7v2.inbox import RawCipher
from hie.context import RequestContext
from hie.settings import Settings


class Exchange(Protocol):
    """``hie.exchange.Exchange`` as the adapter uses it: one transaction per message."""

    def transaction(self, ctx: RequestContext, bundle: dict[str, Any]) -> dict[str, Any]:
        """Apply a FHIR transaction Bundle atomically; raise hie.errors.FhirError on failure."""
        ...

    def transactions(
        self, items: Sequence[tuple[RequestContext, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Apply several transaction Bundles in one commit, all or none (group commit)."""
        ...


class Hl7Environment(Protocol):
    """What the ``hl7`` and ``mllp`` commands find in ``click.Context.obj``."""

    @property
    def settings(self) -> Settings: ...

    def engine(self) -> Engine:
        """The database engine holding the inbox and sender tables."""
        ...

    def exchange(self) -> Exchange: ...

    def raw_cipher(self) -> RawCipher | None:
        """Seals the inbox's raw messages at rest (None: stored as received)."""
        ...
