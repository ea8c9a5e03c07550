"""Granting scopes: what a client asks for, narrowed to what it is registered for.

Clinical scopes (SMART v2 ``context/Type.cruds``, with the v1 suffixes ``read``,
``write`` and ``*``) are intersected permission by permission, so a client registered
for ``system/*.rs`` that asks for ``system/Patient.cruds`` gets ``system/Patient.rs``.
A request for a wildcard type is only met by a registered wildcard. Any other scope
(``card.identify``, ``launch``...) is granted only if registered verbatim.
"""

from __future__ import annotations

import re

_CLINICAL = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_ORDER = "cruds"


def _parse(item: str) -> tuple[str, str, set[str]] | None:
    match = _CLINICAL.match(item)
    if not match:
        return None
    context, rtype, perms = match.groups()
    perms = _V1.get(perms, perms)
    if not perms or not set(perms) <= set(_ORDER):
        return None
    return context, rtype, set(perms)


def _letters(perms: set[str]) -> str:
    return "".join(c for c in _ORDER if c in perms)


def grant(requested: str, registered: str) -> str:
    """The scopes of ``requested`` that ``registered`` allows, in request order."""
    allowed: dict[tuple[str, str], set[str]] = {}
    plain: set[str] = set()
    for item in registered.split():
        parsed = _parse(item)
        if parsed is None:
            plain.add(item)
        else:
            context, rtype, perms = parsed
            allowed.setdefault((context, rtype), set()).update(perms)
    granted: list[str] = []
    for item in requested.split():
        parsed = _parse(item)
        if parsed is None:
            if item in plain and item not in granted:
                granted.append(item)
            continue
        context, rtype, perms = parsed
        permitted = set(allowed.get((context, "*"), set()))
        if rtype != "*":
            permitted |= allowed.get((context, rtype), set())
        letters = _letters(perms & permitted)
        scope = f"{context}/{rtype}.{letters}"
        if letters and scope not in granted:
            granted.append(scope)
    return " ".join(granted)


def well_formed(scope: str) -> list[str]:
    """The items of ``scope`` that look clinical but are not valid SMART scopes."""
    bad = []
    for item in scope.split():
        if "/" in item and _parse(item) is None:
            bad.append(item)
    return bad
