"""Provisional validator until hie.fhir.validation lands (R4B model validation only)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

import fhir.resources.R4B as r4b  # noqa: N811
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from hie.errors import InvalidResource, Issue


def served_types() -> frozenset[str]:
    names = set()
    for module in pkgutil.iter_modules(r4b.__path__):
        mod = importlib.import_module(f"fhir.resources.R4B.{module.name}")
        for value in vars(mod).values():
            if (
                isinstance(value, type)
                and issubclass(value, Resource)
                and value.__module__ == mod.__name__
                and value.__name__ == value.get_resource_type()
                and value.__name__ not in ("Resource", "DomainResource")
            ):
                names.add(value.__name__)
    return frozenset(names)


class ModelValidator:
    def check(self, resource: Mapping[str, Any]) -> None:
        rtype = resource.get("resourceType")
        try:
            cls = get_fhir_model_class(str(rtype))
        except (KeyError, ValueError):
            raise InvalidResource(f"unknown resourceType '{rtype}'") from None
        try:
            cls.model_validate(dict(resource))
        except ValidationError as exc:
            issues = [
                Issue(
                    "error",
                    "structure",
                    err["msg"],
                    (".".join([str(rtype), *(str(p) for p in err["loc"])]),),
                )
                for err in exc.errors()
            ]
            raise InvalidResource(f"{rtype} is not valid", issues=issues) from exc
