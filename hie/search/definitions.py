"""Search parameter definitions: which parameters each resource type has, and their types.

The data (``data/search-parameters.json``) is generated from the official R4
SearchParameter bundle by :mod:`hie.search.build_data`; see the attribution in that
file. :func:`default_registry` loads it once per process (immutable afterwards).
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

DATA_FILE = "search-parameters.json"


class ParamType(enum.StrEnum):
    NUMBER = "number"
    DATE = "date"
    STRING = "string"
    TOKEN = "token"
    REFERENCE = "reference"
    COMPOSITE = "composite"
    QUANTITY = "quantity"
    URI = "uri"
    SPECIAL = "special"


# Modifiers each type accepts (R4 search page). ":[Type]" on references is checked apart.
SUPPORTED_MODIFIERS: Mapping[ParamType, frozenset[str]] = {
    ParamType.STRING: frozenset({"exact", "contains", "missing"}),
    ParamType.TOKEN: frozenset({"not", "text", "missing", "of-type"}),
    ParamType.DATE: frozenset({"missing"}),
    ParamType.NUMBER: frozenset({"missing"}),
    ParamType.QUANTITY: frozenset({"missing"}),
    ParamType.REFERENCE: frozenset({"missing", "identifier"}),
    ParamType.URI: frozenset({"below", "above", "missing"}),
    ParamType.COMPOSITE: frozenset({"missing"}),
    ParamType.SPECIAL: frozenset(),
}

# Modifiers the specification defines that this server does not implement: a warning, not a 400.
UNSUPPORTED_MODIFIERS: Mapping[ParamType, frozenset[str]] = {
    ParamType.TOKEN: frozenset({"in", "not-in", "above", "below"}),
    ParamType.REFERENCE: frozenset({"above", "below"}),
    ParamType.STRING: frozenset({"text"}),
}

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
ORDERED_TYPES = frozenset({ParamType.NUMBER, ParamType.DATE, ParamType.QUANTITY})


@dataclass(frozen=True, slots=True)
class ComponentDef:
    """One component of a composite parameter: the referenced parameter and its sub-expression."""

    code: str
    type: ParamType
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParamDef:
    """A search parameter as it applies to one resource type."""

    resource_type: str
    code: str
    type: ParamType
    expression: str | None
    url: str
    targets: tuple[str, ...] = ()
    components: tuple[ComponentDef, ...] = ()
    column: str | None = None  # "id" / "last_updated": a resource-table column, no index rows
    single: bool = False  # at most one value per resource (from the element cardinalities)

    @property
    def modifiers(self) -> frozenset[str]:
        return SUPPORTED_MODIFIERS[self.type]

    @property
    def comparators(self) -> tuple[str, ...]:
        return PREFIXES if self.type in ORDERED_TYPES else ()

    @property
    def searchable(self) -> bool:
        """Whether the server can evaluate it (an expression or a column)."""
        return self.type is not ParamType.SPECIAL and (
            self.expression is not None or self.column is not None
        )


# Common parameters stored as columns of the resource table.
_COLUMNS = {"_id": "id", "_lastUpdated": "last_updated"}
COMMON_PARAMS = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")


class SearchRegistry:
    """Lookup of search parameter definitions per resource type."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.attribution: str = data.get("attribution", "")
        self.element_types: Mapping[str, list[str]] = data["elements"]
        prefix: str = data.get("urlPrefix", "")
        self._all_types = tuple(sorted(data["resources"]))
        common = {
            code: self._param("Resource", code, raw, prefix)
            for code, raw in data["common"].items()
            if code in COMMON_PARAMS
        }
        self._by_type: dict[str, dict[str, SearchParamDef]] = {}
        for rtype, params in data["resources"].items():
            own = {code: self._param(rtype, code, raw, prefix) for code, raw in params.items()}
            merged = {code: _rebase(p, rtype) for code, p in common.items()}
            merged.update(own)
            self._by_type[rtype] = dict(sorted(merged.items()))
        self._compartments: dict[str, dict[str, tuple[str, ...]]] = {
            name: {t: tuple(codes) for t, codes in members.items()}
            for name, members in data.get("compartments", {}).items()
        }
        self._shape: dict[str, dict[str, tuple[str, ...]]] = {
            t: {k: tuple(v) for k, v in parts.items()} for t, parts in data.get("shape", {}).items()
        }

    @property
    def resource_types(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_type))

    def params(self, resource_type: str) -> Mapping[str, SearchParamDef]:
        """Every parameter of ``resource_type`` by code (empty for an unknown type)."""
        return self._by_type.get(resource_type, {})

    def param(self, resource_type: str, code: str) -> SearchParamDef | None:
        return self._by_type.get(resource_type, {}).get(code)

    def compartment(self, name: str = "Patient") -> Mapping[str, tuple[str, ...]]:
        """Resource type -> the parameters whose references put it in a ``name`` compartment
        (from the R4 CompartmentDefinition; the compartment's own type is not listed)."""
        return self._compartments.get(name, {})

    def summary_elements(self, resource_type: str) -> tuple[str, ...]:
        """Top-level elements marked ``isSummary`` (choices as ``value[x]``), for ``_summary``."""
        return self._shape.get(resource_type, {}).get("summary", ())

    def mandatory_elements(self, resource_type: str) -> tuple[str, ...]:
        """Top-level elements with ``min >= 1`` (kept by ``_elements`` and ``_summary``)."""
        return self._shape.get(resource_type, {}).get("mandatory", ())

    def _param(self, rtype: str, code: str, raw: Mapping[str, Any], prefix: str) -> SearchParamDef:
        targets = tuple(raw.get("target", ()))
        return SearchParamDef(
            resource_type=rtype,
            code=code,
            type=ParamType(raw["type"]),
            expression=raw.get("expr"),
            url=prefix + raw["url"],
            targets=self._all_types if targets == ("*",) else targets,
            components=tuple(
                ComponentDef(c["code"], ParamType(c["type"]), c["expr"])
                for c in raw.get("components", ())
            ),
            column=_COLUMNS.get(code),
            single=bool(raw.get("single", False)),
        )


def _rebase(p: SearchParamDef, rtype: str) -> SearchParamDef:
    return SearchParamDef(
        rtype, p.code, p.type, p.expression, p.url, p.targets, p.components, p.column, p.single
    )


def load_data() -> dict[str, Any]:
    text = resources.files("hie.search").joinpath("data", DATA_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@functools.cache
def default_registry() -> SearchRegistry:
    """The registry of the packaged R4 definitions (built once; immutable)."""
    return SearchRegistry(load_data())
