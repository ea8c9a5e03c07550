"""The FHIR R4 (4.0.1) element definitions: which JSON members each type may have.

Loaded from ``hie/fhir/data/r4-elements.json.gz``, generated from the official R4
StructureDefinitions by :mod:`hie.fhir.definitions_build` (see data/README.md).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

_DATA_FILE = "r4-elements.json.gz"

#: The type of elements that hold any resource (contained, Bundle.entry.resource, ...).
ANY_RESOURCE = "Resource"


@dataclass(frozen=True, slots=True)
class ElementDef:
    """One JSON member of a type (``valueQuantity`` for a ``value[x]`` choice)."""

    name: str
    type: str  # a primitive, datatype, backbone key ("Patient.contact") or "Resource"
    array: bool = False
    required: bool = False
    primitive: bool = False
    extensible: bool = True  # a primitive may have a `_name` sibling
    choice: str | None = None  # the choice group ("value" for value[x])
    value_set: str | None = None  # required binding on a code


@dataclass(frozen=True, slots=True)
class TypeDef:
    """A resource type, complex datatype or backbone element (keyed by its path)."""

    name: str
    kind: str  # "resource", "datatype" or "backbone"
    abstract: bool
    elements: Mapping[str, ElementDef]
    required_choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Primitive:
    name: str
    json: str  # "boolean", "integer", "number" or "string"
    regex: str | None = None


@dataclass(frozen=True)
class R4Definitions:
    types: Mapping[str, TypeDef]
    primitives: Mapping[str, Primitive]

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> R4Definitions:
        types = {}
        for name, raw in document["types"].items():
            elements = {
                member: ElementDef(
                    name=member,
                    type=el["type"],
                    array=el.get("array", False),
                    required=el.get("required", False),
                    primitive=el.get("primitive", False),
                    extensible=el.get("extensible", True),
                    choice=el.get("choice"),
                    value_set=el.get("valueSet"),
                )
                for member, el in raw["elements"].items()
            }
            types[name] = TypeDef(
                name=name,
                kind=raw["kind"],
                abstract=raw["abstract"],
                elements=MappingProxyType(elements),
                required_choices=tuple(raw.get("requiredChoices", ())),
            )
        primitives = {
            name: Primitive(name, raw["json"], raw.get("regex"))
            for name, raw in document["primitives"].items()
        }
        return cls(MappingProxyType(types), MappingProxyType(primitives))

    def resource_types(self) -> frozenset[str]:
        """Every concrete R4 resource type."""
        return frozenset(
            name for name, t in self.types.items() if t.kind == "resource" and not t.abstract
        )


def load_r4_definitions() -> R4Definitions:
    """The R4 element definitions shipped as package data."""
    raw = resources.files("hie.fhir.data").joinpath(_DATA_FILE).read_bytes()
    return R4Definitions.from_json(json.loads(gzip.decompress(raw)))
