"""The service API: the one way to storage for every way in (REST, adapters, card, web)."""

from hie.exchange.results import HistoryResult, SearchResult, WriteResult
from hie.exchange.service import Exchange
from hie.storage.ports import StoredResource

__all__ = ["Exchange", "HistoryResult", "SearchResult", "StoredResource", "WriteResult"]
