"""What the exchange is assembled from; each collaborator is passed in by ``hie.app``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from hie.storage.ports import TokenRow

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


class Validator(Protocol):
    def check(self, resource: Mapping[str, Any]) -> None:
        """Raise ``hie.errors.InvalidResource`` naming every problem's element path."""


class Indexer(Protocol):
    def tokens(self, resource: Mapping[str, Any]) -> Sequence[TokenRow]:
        """The search-index rows of a resource about to be written."""
