"""FHIR search, the pure half: definitions, index extraction and query parsing.

No database here (an import-linter contract keeps sqlalchemy out): the SQL planner
lives in the storage layer and consumes what this package produces.

- :mod:`hie.search.definitions`: :class:`SearchRegistry` of R4 search parameters.
- :mod:`hie.search.extract`: :class:`Extractor`, resource -> index rows (:mod:`.rows`).
- :mod:`hie.search.params`: :class:`QueryParser`, parameters -> :mod:`.query` AST.
- :mod:`hie.search.shaping`: :class:`~hie.search.shaping.Shaper`, ``_summary`` and ``_elements``.
- :mod:`hie.search.dates`, :mod:`.numbers`, :mod:`.predicates`, :mod:`.text`: the value
  semantics (date ranges, precision, prefixes, normalisation) shared with the planner.
"""

from hie.search.definitions import ParamType, SearchParamDef, SearchRegistry, default_registry
from hie.search.extract import Extractor
from hie.search.params import QueryParser

__all__ = [
    "Extractor",
    "ParamType",
    "QueryParser",
    "SearchParamDef",
    "SearchRegistry",
    "default_registry",
]
