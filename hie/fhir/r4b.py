"""Access to the ``fhir.resources.R4B`` models, and where they differ from R4.

hie validates R4 (4.0.1) JSON with the R4B (4.3) models because fhir.resources ships
no pydantic-2 R4 models (ARCHITECTURE.md section 3). This is the one module that
imports them. Never import the package root: those are R5 models.

Where an R4 element is missing from the R4B model of its type, or has another type
or array shape there, the models cannot judge it: that element is a *gap*.
:func:`find_gaps` lists them by comparing the R4 definitions with the models, and
:func:`find_r4b_only` lists the R4B elements R4 lacks. The result is committed as
``data/r4b-gaps.json`` (``python -m hie.fhir.r4b`` rewrites it, and a test keeps it
current with the installed models), so loading a validator imports no models.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import pydantic
from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

from hie.fhir.definitions import ANY_RESOURCE, R4Definitions, load_r4_definitions

_GAPS_FILE = "r4b-gaps.json"
Model = type[FHIRAbstractModel]


def model_for(type_name: str) -> Model | None:
    """The R4B model of an R4 type or backbone key (``Patient.contact``), if any."""
    class_name = "".join(part[0].upper() + part[1:] for part in type_name.split("."))
    try:
        return get_fhir_model_class(class_name)
    except ValueError:
        return None


def primitive_adapter(type_name: str) -> pydantic.TypeAdapter[Any] | None:
    """A validator for one R4B primitive value (``dateTime``, ``code``, ...), if any."""
    annotation = getattr(fhirtypes, type_name[0].upper() + type_name[1:] + "Type", None)
    return None if annotation is None else pydantic.TypeAdapter(annotation)


def primitive_extension_model() -> Model:
    """The model of a primitive's ``_name`` sibling (its id and extensions)."""
    return get_fhir_model_class("FHIRPrimitiveExtension")


def _optional_of(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _unwrap(annotation: Any) -> tuple[bool, Any]:
    """(is a list, item type) of a model field annotation."""
    annotation = _optional_of(annotation)
    if typing.get_origin(annotation) is list:
        # Lists of primitives admit None items (paired with `_name` extensions).
        return True, _optional_of(typing.get_args(annotation)[0])
    return False, annotation


def _primitive_name(item: Any) -> str | None:
    if item is bool:
        return "boolean"
    for meta in typing.get_args(item)[1:]:
        name = type(meta).__name__
        if name == "UuidVersion":
            return "uuid"
        if name != "EncodedBytes":
            return name[0].lower() + name[1:]
    return None


def _model_of(item: Any) -> Model | None:
    get = getattr(item, "get_model_klass", None)
    return None if get is None else typing.cast(Model, get())


def complex_fields(model: Model) -> dict[str, tuple[Model, bool]]:
    """A model's complex-typed fields by JSON name: (the element's model, is a list)."""
    out: dict[str, tuple[Model, bool]] = {}
    for name, field in model.model_fields.items():
        array, item = _unwrap(field.annotation)
        element = _model_of(item)
        if element is not None:
            out[field.alias or name] = (element, array)
    return out


def _reachable(defs: R4Definitions, roots: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs.types:
            continue
        seen.add(name)
        todo.extend(el.type for el in defs.types[name].elements.values() if not el.primitive)
    return sorted(seen)


def find_gaps(defs: R4Definitions, served: Iterable[str]) -> dict[str, dict[str, str]]:
    """R4 elements the R4B models cannot judge, by R4 type key and JSON name.

    The reason is ``absent`` (no such field), ``shape`` (array vs single) or ``type``.
    Every type reachable from ``served`` is compared.
    """
    resource_model = model_for(ANY_RESOURCE)
    gaps: dict[str, dict[str, str]] = {}
    for key in _reachable(defs, served):
        model = model_for(key)
        if model is None:
            continue  # its parent's element is reported as a type gap
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        found: dict[str, str] = {}
        for el in defs.types[key].elements.values():
            if el.primitive and el.extensible and "_" + el.name not in fields:
                found["_" + el.name] = "absent"
            field = fields.get(el.name)
            if field is None:
                found[el.name] = "absent"
                continue
            array, item = _unwrap(field.annotation)
            if array != el.array:
                found[el.name] = "shape"
            elif el.primitive:
                if _primitive_name(item) != el.type:
                    found[el.name] = "type"
            elif _model_of(item) is not (
                resource_model if el.type == ANY_RESOURCE else model_for(el.type)
            ):
                found[el.name] = "type"
        if found:
            gaps[key] = dict(sorted(found.items()))
    return gaps


def find_r4b_only(defs: R4Definitions, served: Iterable[str]) -> dict[str, list[str]]:
    """Elements the R4B models have and R4 lacks, by R4 type key (for messages)."""
    found: dict[str, list[str]] = {}
    for key in _reachable(defs, served):
        model = model_for(key)
        if model is None:
            continue
        r4 = defs.types[key].elements
        extra = sorted(
            alias
            for name, f in model.model_fields.items()
            if not (alias := f.alias or name).startswith("_")
            and alias not in r4
            and alias not in ("fhir_comments", "resourceType")
        )
        if extra:
            found[key] = extra
    return found


class R4BDifferences(typing.NamedTuple):
    gaps: Mapping[str, Mapping[str, str]]  # R4 elements the models cannot judge
    r4b_only: Mapping[str, Sequence[str]]  # R4B elements R4 lacks


def load_r4b_differences() -> R4BDifferences:
    """The committed comparison (see :func:`find_gaps` and :func:`find_r4b_only`)."""
    text = resources.files("hie.fhir.data").joinpath(_GAPS_FILE).read_text(encoding="utf-8")
    document = json.loads(text)
    return R4BDifferences(document["gaps"], document["r4bOnly"])


def gaps_document(defs: R4Definitions, served: Iterable[str]) -> dict[str, Any]:
    return {
        "comment": (
            "R4 (4.0.1) elements that the fhir.resources.R4B models lack (absent), "
            "shape differently (shape: array vs single) or type differently (type); "
            "r4bOnly: elements of the R4B models that R4 lacks. "
            "Generated by python -m hie.fhir.r4b."
        ),
        "fhirResources": metadata.version("fhir.resources"),
        "gaps": find_gaps(defs, served),
        "r4bOnly": find_r4b_only(defs, served),
    }


def main() -> None:
    from hie.fhir.types import SERVED_TYPES

    out = Path(__file__).with_name("data") / _GAPS_FILE
    document = gaps_document(load_r4_definitions(), SERVED_TYPES)
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {out}\n")


if __name__ == "__main__":
    main()
