"""The service API: the one way to storage for every way in (REST, adapters, card, web)."""

from hie.consent.grants import CARD_PRESENTED, TREATMENT, Grant
from hie.exchange.results import HistoryResult, SearchResult, WriteResult
from hie.exchange.service import Exchange
from hie.storage.ports import StoredResource

__all__ = [
    "CARD_PRESENTED",
    "TREATMENT",
    "Exchange",
    "Grant",
    "HistoryResult",
    "SearchResult",
    "StoredResource",
    "WriteResult",
]
