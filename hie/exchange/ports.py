"""What the exchange is assembled from; each collaborator is passed in by ``hie.app``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from hie.context import RequestContext
from hie.search.rows import IndexRow
from hie.storage.ports import Visibility

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


class Validator(Protocol):
    def check(self, resource: Mapping[str, Any]) -> None:
        """Raise ``hie.errors.InvalidResource`` naming every problem's element path."""


class Indexer(Protocol):
    def extract(self, resource: Mapping[str, Any]) -> list[IndexRow]:
        """The search-index rows of a resource about to be written (``hie.search.Extractor``)."""


class VisibilityPolicy(Protocol):
    def __call__(self, ctx: RequestContext) -> Visibility:
        """What ``ctx`` may see in searches, as a filter the store applies before paging.

        The consent decision point provides this; whatever it hides never takes a place
        on a page, in a total or among the includes (docs/search.md, "Consent").
        """


def see_everything(ctx: RequestContext) -> Visibility:
    """The policy until the consent work lands: hide nothing."""
    return Visibility()
