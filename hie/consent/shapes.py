"""Consent shapes: how searches find whose records a Consent opens without listing them.

Many residents sign the same Consent (the same provision tree, from the same form). Each
active patient-privacy Consent gets one extra index row: a token holding the hash of its
provision tree, its *shape*. A search compiles each distinct shape once for the caller,
and the store finds the patients of a shape through the Consent's own ``patient``
reference row. Nothing is listed and nothing is cached: withdrawing a Consent rewrites
its index rows in the same transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from hie.consent.provisions import parse_consent
from hie.search.rows import IndexRow, TokenRow

SHAPE_PARAM = "_consent-shape"  # a token row on Consent, not a FHIR search parameter


def shape_of(resource: Mapping[str, Any]) -> str | None:
    """The shape of an active patient-privacy Consent; None for any other resource."""
    if resource.get("resourceType") != "Consent" or parse_consent(resource) is None:
        return None
    tree = orjson.dumps(resource.get("provision"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(tree).hexdigest()[:32]


class _Extract(Protocol):
    def extract(self, resource: Mapping[str, Any]) -> list[IndexRow]: ...


class ShapeIndexer:
    """The search extractor, plus the shape row of active privacy Consents."""

    def __init__(self, extractor: _Extract) -> None:
        self._extractor = extractor

    def extract(self, resource: Mapping[str, Any]) -> list[IndexRow]:
        rows = self._extractor.extract(resource)
        shape = shape_of(resource)
        if shape is not None:
            rows.append(TokenRow(SHAPE_PARAM, None, shape))
        return rows
