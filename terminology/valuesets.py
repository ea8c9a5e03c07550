"""The codes of the FHIR R4 value sets behind required bindings.

``terminology/data/r4-required-valuesets.json`` is generated from the official R4
definitions by ``python -m hie.fhir.definitions_build`` (see data/README.md). A value
set the definitions cannot expand (an external code system such as BCP-13 mime types
or ISO 4217 currencies) is listed as not enforceable, and :meth:`ValueSets.contains`
answers ``None`` for it rather than guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

_DATA_FILE = "r4-required-valuesets.json"


def _canonical(url: str) -> str:
    return url.split("|", 1)[0]


class ValueSets:
    """Known value sets by canonical URL (a ``|version`` suffix is ignored)."""

    def __init__(
        self,
        codes: Mapping[str, frozenset[str]],
        unenforceable: Mapping[str, str] | None = None,
    ) -> None:
        self._codes = MappingProxyType(dict(codes))
        self._unenforceable = MappingProxyType(dict(unenforceable or {}))

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ValueSets:
        codes: dict[str, frozenset[str]] = {}
        unenforceable: dict[str, str] = {}
        for url, entry in document["valueSets"].items():
            if "codes" in entry:
                codes[url] = frozenset(entry["codes"])
            else:
                unenforceable[url] = str(entry.get("reason", "not expandable"))
        return cls(codes, unenforceable)

    def contains(self, url: str, code: str) -> bool | None:
        """Whether ``code`` is in the value set; ``None`` when it cannot be enforced."""
        codes = self._codes.get(_canonical(url))
        return None if codes is None else code in codes

    def codes(self, url: str) -> frozenset[str] | None:
        """All codes of the value set; ``None`` when it cannot be enforced."""
        return self._codes.get(_canonical(url))

    def why_unenforceable(self, url: str) -> str | None:
        """The reason a known value set is not enforced; ``None`` if it is or is unknown."""
        return self._unenforceable.get(_canonical(url))

    def urls(self) -> frozenset[str]:
        """Every value set this instance knows, enforceable or not."""
        return frozenset(self._codes) | frozenset(self._unenforceable)


def load_required_value_sets() -> ValueSets:
    """The R4 required-binding value sets shipped as package data."""
    text = resources.files("terminology.data").joinpath(_DATA_FILE).read_text(encoding="utf-8")
    return ValueSets.from_json(json.loads(text))
