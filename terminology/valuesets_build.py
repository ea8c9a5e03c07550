"""Expand the R4 value sets behind required bindings into plain code lists.

Called by ``python -m hie.fhir.definitions_build``, which knows which value sets the
element definitions bind; this module only knows ValueSets and CodeSystems.

A value set is expanded from the definitions alone: whole code systems, listed
concepts (with their nested children), other value sets, and ``is-a`` /
``descendent-of`` filters on a code system's concept hierarchy. Anything else (a
code system the definitions do not carry, such as BCP-13 mime types or ISO 4217
currencies, a fragment code system, another filter) makes the value set
unenforceable; it is recorded with the reason and never enforced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Json = Mapping[str, Any]


class Unexpandable(Exception):
    """The value set cannot be expanded from the definitions; the message says why."""


@dataclass(frozen=True)
class Expansion:
    url: str
    codes: frozenset[str] | None
    reason: str | None = None


def _concepts(concepts: Iterable[Json]) -> Iterator[Json]:
    for concept in concepts:
        yield concept
        yield from _concepts(concept.get("concept", ()))


def _descendants(concepts: Iterable[Json], code: str, *, include_self: bool) -> set[str]:
    for concept in _concepts(concepts):
        if concept["code"] == code:
            found = {c["code"] for c in _concepts(concept.get("concept", ()))}
            if include_self:
                found.add(code)
            return found
    raise Unexpandable(f"filter names code {code!r}, which its code system lacks")


def _strip_version(url: str) -> str:
    return url.split("|", 1)[0]


class ValueSetExpander:
    """Expands ValueSets over the CodeSystems and ValueSets given to it."""

    def __init__(self, resources: Iterable[Json]) -> None:
        self._code_systems: dict[str, Json] = {}
        self._value_sets: dict[str, Json] = {}
        for resource in resources:
            kind = resource.get("resourceType")
            if kind == "CodeSystem":
                self._code_systems.setdefault(resource["url"], resource)
            elif kind == "ValueSet":
                self._value_sets.setdefault(resource["url"], resource)

    def expand(self, url: str) -> Expansion:
        url = _strip_version(url)
        try:
            return Expansion(url, frozenset(self._expand(url, ())))
        except Unexpandable as why:
            return Expansion(url, None, str(why))

    def _expand(self, url: str, seen: tuple[str, ...]) -> set[str]:
        if url in seen:
            raise Unexpandable(f"value set {url} includes itself")
        value_set = self._value_sets.get(url)
        if value_set is None:
            raise Unexpandable(f"value set {url} is not in the definitions")
        compose = value_set.get("compose")
        if compose is None:
            raise Unexpandable(f"value set {url} has no compose")
        codes: set[str] = set()
        for include in compose.get("include", ()):
            codes |= self._part(include, (*seen, url))
        for exclude in compose.get("exclude", ()):
            codes -= self._part(exclude, (*seen, url))
        return codes

    def _part(self, part: Json, seen: tuple[str, ...]) -> set[str]:
        selected: set[str] | None = None
        if "system" in part:
            selected = self._from_system(part)
        for nested in part.get("valueSet", ()):
            codes = self._expand(_strip_version(nested), seen)
            selected = codes if selected is None else selected & codes
        if selected is None:
            raise Unexpandable("a compose part names neither a system nor a value set")
        return selected

    def _from_system(self, part: Json) -> set[str]:
        system = part["system"]
        if "concept" in part and "filter" not in part:
            # Listed codes need no code system: the value set itself enumerates them.
            return {c["code"] for c in part["concept"]}
        code_system = self._code_systems.get(system)
        if code_system is None:
            raise Unexpandable(f"code system {system} is not in the definitions")
        content = code_system.get("content")
        if content != "complete":
            raise Unexpandable(f"code system {system} has content {content!r}, not complete")
        concepts = code_system.get("concept", ())
        if "filter" not in part:
            return {c["code"] for c in _concepts(concepts)}
        selected: set[str] | None = None
        for flt in part["filter"]:
            prop, op, value = flt.get("property"), flt.get("op"), flt.get("value")
            if prop != "concept" or op not in ("is-a", "descendent-of"):
                raise Unexpandable(f"filter {prop} {op} {value} on {system} is not supported")
            codes = _descendants(concepts, str(value), include_self=op == "is-a")
            selected = codes if selected is None else selected & codes
        if "concept" in part and selected is not None:
            selected &= {c["code"] for c in part["concept"]}
        return selected or set()


def expand_all(expander: ValueSetExpander, urls: Iterable[str]) -> dict[str, Any]:
    """The ``valueSets`` member of r4-required-valuesets.json for these urls."""
    out: dict[str, Any] = {}
    for url in sorted({_strip_version(u) for u in urls}):
        expansion = expander.expand(url)
        if expansion.codes is None:
            out[url] = {"enforceable": False, "reason": expansion.reason}
        else:
            out[url] = {"codes": sorted(expansion.codes)}
    return out
