"""``_summary`` and ``_elements``: the subset of a resource a search returns.

Resources are stored as canonical JSON bytes and served as they are; only a search
that asks for a subset pays for parsing and re-serialising. A subset is marked with
the ``SUBSETTED`` tag in ``meta.tag`` (R4 search page, "Summary" and "Elements").

Elements are chosen at the top level: a summary element is returned whole. Choice
elements are named as in the definitions (``deceased[x]``) and match every JSON key of
the choice (``deceasedBoolean``); a primitive's ``_name`` sibling follows its element.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import orjson

from hie.search.definitions import SearchRegistry
from hie.search.query import Summary

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


def _matches(key: str, names: Collection[str], choices: Collection[str]) -> bool:
    bare = key[1:] if key.startswith("_") else key
    if bare in names:
        return True
    return any(bare.startswith(c) and bare[len(c) : len(c) + 1].isupper() for c in choices)


def _split(names: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
    plain = frozenset(n for n in names if not n.endswith("[x]"))
    choices = frozenset(n[:-3] for n in names if n.endswith("[x]"))
    return plain, choices


class Shaper:
    """Applies ``_summary``/``_elements`` to stored bytes; immutable, share freely."""

    def __init__(self, registry: SearchRegistry) -> None:
        self._registry = registry

    def needed(self, summary: Summary | None, elements: Collection[str]) -> bool:
        return bool(elements) or summary in (Summary.TRUE, Summary.TEXT, Summary.DATA)

    def shape(
        self,
        content: bytes,
        resource_type: str,
        summary: Summary | None,
        elements: Collection[str] = (),
    ) -> bytes:
        if not self.needed(summary, elements):
            return content
        resource: dict[str, Any] = orjson.loads(content)
        reg = self._registry
        mandatory = reg.mandatory_elements(resource_type)
        keep: Collection[str]
        if summary is Summary.TRUE:
            keep = (*reg.summary_elements(resource_type), *mandatory)
        elif summary is Summary.TEXT:
            keep = ("text", *mandatory)
        elif summary is Summary.DATA:
            keep = [k for k in resource if k not in ("text", "_text")]
        else:
            # A requested name may be a choice written without [x] ("deceased").
            asked = [e.removeprefix(resource_type + ".").removesuffix("[x]") for e in elements]
            keep = [*asked, *(a + "[x]" for a in asked), *mandatory]
        plain, choices = _split(keep)
        out = {
            k: v
            for k, v in resource.items()
            if k in _ALWAYS or _matches(k, plain, choices) or k == "_id"
        }
        return orjson.dumps(_tagged(out))


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta: Mapping[str, Any] = resource.get("meta") or {}
    tags = [
        t for t in meta.get("tag", ()) if not (isinstance(t, dict) and t.get("code") == "SUBSETTED")
    ]
    resource["meta"] = {**meta, "tag": [*tags, SUBSETTED]}
    return resource
