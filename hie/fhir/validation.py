"""Validate a FHIR R4 resource once, on write.

Two passes, each owning what it does best:

1. :class:`~hie.fhir.structure.StructureChecker` walks the JSON against the R4
   definitions: resource types, elements, shapes, JSON types, required elements,
   choices, required value sets (see that module).
2. The ``fhir.resources.R4B`` model checks the primitive formats (dates, ids,
   decimals, ...). Its errors become issues with FHIRPath expressions; errors the
   walker owns (existence, cardinality, choices) or already reported are dropped,
   as are errors inside *gaps*, R4 elements the R4B model lacks or shapes
   differently (:mod:`hie.fhir.r4b`). A gap's value is checked on its own against
   the R4B model of its R4 type instead, so valid R4 passes and is still validated.

Usage: ``validator = load_validator()`` once, then ``validator.check(resource)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pydantic

from hie.errors import InvalidResource, Issue
from hie.fhir import r4b
from hie.fhir.definitions import R4Definitions, load_r4_definitions
from hie.fhir.structure import (
    COMPLEX,
    EXTENSION,
    R4B_UNRELIABLE,
    RESOURCE,
    GapValue,
    Member,
    Struct,
    StructureChecker,
    parent_paths,
)
from terminology.valuesets import ValueSets, load_required_value_sets

# Model errors about what the walker owns: existence, requiredness, resource types,
# arrays and objects (the walker is stricter; the model's view of a gap is wrong).
_WALKER_OWNED = frozenset(
    {
        "missing",
        "model_field_validation.missing",
        "extra_forbidden",
        "model_validation_format",
        "fhir-validation-wrong-resource-type",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
    }
)
# fhir_core's choice-type checks (one_of_many), which the walker does for R4.
_CHOICE_MESSAGES = ("Any of one field value is expected", "Expect any of field value")
_STRUCTURE_ERRORS = frozenset({"too_short", "too_long"})
_MAX_SHOWN_INPUT = 80

_Validates = pydantic.TypeAdapter[Any] | type[Any]
_MAX_REMEMBERED = 20_000  # valid element values kept (a few MB)


class _NotPlain(Exception):
    """A value the element-by-element check does not judge (left to the full one)."""


def _is_choice_error(error: Mapping[str, Any]) -> bool:
    if error["type"] != "value_error":
        return False
    message = str(error.get("ctx", {}).get("error", error.get("msg", "")))
    return message.startswith(_CHOICE_MESSAGES)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_INPUT else text[: _MAX_SHOWN_INPUT - 3] + "..."


class Validator:
    """FHIR R4 validation of resource JSON (parsed: dicts, lists, str, int, float, bool).

    ``validate`` returns every issue found (empty: valid); ``check`` raises
    :class:`~hie.errors.InvalidResource` with them. Neither raises on bad input.
    Instances hold only immutable tables and caches of models; share one.
    """

    def __init__(
        self,
        definitions: R4Definitions,
        value_sets: ValueSets,
        differences: r4b.R4BDifferences,
        *,
        by_parts: bool = True,
    ) -> None:
        """``by_parts``: remember valid element values (see ``_valid_by_parts``);
        False validates every resource whole (the reference the tests compare with)."""
        self._by_parts = by_parts
        self._structure = StructureChecker(
            definitions, value_sets, differences.gaps, differences.r4b_only
        )
        self._models: dict[str, r4b.Model | None] = {}
        self._adapters: dict[str, pydantic.TypeAdapter[Any] | None] = {}
        self._fields: dict[r4b.Model, dict[str, tuple[r4b.Model, bool]]] = {}
        # Valid top-level element values already validated, by (model, canonical JSON).
        self._valid: dict[tuple[r4b.Model, bytes], Any] = {}

    def validate(self, resource: Mapping[str, Any]) -> list[Issue]:
        """All issues of ``resource``; an empty list means it is valid R4."""
        if isinstance(resource, Mapping) and not isinstance(resource, dict):
            resource = dict(resource)
        issues: list[Issue] = []
        gap_values: list[GapValue] = []
        try:
            rtype = self._structure.check(resource, issues, gap_values)
            if rtype is None:
                return issues
            found = self._model_issues(rtype, resource, bool(issues))
            for gap in gap_values:
                found.extend(self._gap_issues(gap))
        except RecursionError:
            return [Issue("error", "structure", "The resource is nested too deeply")]
        if found:
            issues.extend(_new_issues(issues, found))
        return issues

    def check(self, resource: Mapping[str, Any]) -> None:
        """Raise :class:`~hie.errors.InvalidResource` (400) listing every issue."""
        issues = self.validate(resource)
        if issues:
            first = issues[0]
            where = f" at {first.expression[0]}" if first.expression else ""
            more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
            raise InvalidResource(f"Invalid resource: {first.diagnostics}{where}{more}", issues)

    # -- the R4B model ------------------------------------------------------------

    def _model(self, type_name: str) -> r4b.Model | None:
        if type_name not in self._models:
            self._models[type_name] = r4b.model_for(type_name)
        return self._models[type_name]

    def _model_issues(
        self, rtype: str, resource: dict[str, Any], walker_failed: bool
    ) -> list[Issue]:
        model = self._model(rtype)
        root = self._structure.struct(rtype)
        if model is None or root is None:
            return []
        if self._by_parts and not walker_failed and self._valid_by_parts(model, resource):
            return []
        try:
            model.model_validate(resource)
        except pydantic.ValidationError as error:
            return self._map_errors(error, root, resource, rtype)
        except RecursionError:
            raise
        except Exception as error:  # the models crash on some bad input
            if walker_failed:
                return []  # the walker has already said what is wrong
            return [Issue("error", "invalid", f"The resource cannot be validated: {error!r}")]
        return []

    def _valid_by_parts(self, model: r4b.Model, resource: dict[str, Any]) -> bool:
        """True when the model accepts ``resource``, judged element by element.

        A complex element's model validates it the same alone or inside the resource,
        so each valid top-level element value is remembered and the resource is then
        validated with those instances in place: a feed's repeated codes, categories,
        ranges and interpretations are checked once. Anything that fails here (or is
        not a plain value) goes to the full validation, which names every issue.
        """
        fields = self._fields.get(model)
        if fields is None:
            fields = self._fields[model] = r4b.complex_fields(model)
        parts: dict[str, Any] = {}
        try:
            for key, value in resource.items():
                spec = fields.get(key)
                if spec is None or value is None:
                    parts[key] = value
                    continue
                element, array = spec
                if array:
                    if not isinstance(value, list):
                        return False
                    parts[key] = [self._valid_part(element, item) for item in value]
                else:
                    parts[key] = self._valid_part(element, value)
            model.model_validate(parts)
        except (pydantic.ValidationError, _NotPlain, TypeError, orjson.JSONEncodeError):
            return False
        return True

    def _valid_part(self, element: r4b.Model, value: Any) -> Any:
        if not isinstance(value, dict):
            raise _NotPlain
        key = (element, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        found = self._valid.get(key)
        if found is None:
            found = element.model_validate(value)
            if len(self._valid) >= _MAX_REMEMBERED:
                self._valid.clear()
            self._valid[key] = found
        return found

    def _map_errors(
        self, error: pydantic.ValidationError, root: Struct, data: Any, base: str
    ) -> list[Issue]:
        out = []
        for err in error.errors(include_url=False):
            if err["type"] in _WALKER_OWNED or _is_choice_error(err):
                continue
            path, in_gap, member = self._structure.locate(root, err["loc"], data, base)
            if in_gap:
                continue
            out.append(_model_issue(err, path, member))
        return out

    # -- gaps: R4 elements the R4B model lacks or reshapes -------------------------

    def _gap_validator(self, member: Member) -> _Validates | None:
        el = member.element
        if member.kind == EXTENSION:
            return r4b.primitive_extension_model()
        if member.kind == COMPLEX:
            return self._model(el.type)
        if member.kind == RESOURCE or el.type in R4B_UNRELIABLE:
            return None  # resources are never gaps; R4B_UNRELIABLE is the walker's
        if el.type not in self._adapters:
            self._adapters[el.type] = r4b.primitive_adapter(el.type)
        return self._adapters[el.type]

    def _gap_issues(self, gap: GapValue) -> list[Issue]:
        member = gap.member
        validator = self._gap_validator(member)
        if validator is None:
            return []
        if member.array:
            if not isinstance(gap.value, list):
                return []  # the walker reported the shape
            items = [(f"{gap.path}[{i}]", v) for i, v in enumerate(gap.value) if v is not None]
        else:
            items = [(gap.path, gap.value)]
        out: list[Issue] = []
        for path, value in items:
            try:
                if isinstance(validator, pydantic.TypeAdapter):
                    validator.validate_python(value)
                else:
                    validator.model_validate(value)
            except pydantic.ValidationError as error:
                if member.target is not None and isinstance(value, dict):
                    out.extend(self._map_errors(error, member.target, value, path))
                else:
                    out.extend(
                        _model_issue(err, path, member)
                        for err in error.errors(include_url=False)
                        if err["type"] not in _WALKER_OWNED
                    )
            except RecursionError:
                raise
            except Exception:  # the walker judges malformed values
                continue
        return out


def _model_issue(err: Mapping[str, Any], path: str, member: Member | None) -> Issue:
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in _STRUCTURE_ERRORS:
        return Issue("error", "structure", message, (path,))
    if member is not None and member.kind not in (COMPLEX, RESOURCE, EXTENSION):
        value = err.get("input")
        if isinstance(value, str | int | float | bool):
            message = f"Invalid {member.element.type} {_shown(value)}: {message}"
        return Issue("error", "value", message, (path,))
    return Issue("error", "invalid", message, (path,))


def _new_issues(known: Sequence[Issue], found: Sequence[Issue]) -> list[Issue]:
    """``found`` minus issues at or under a path ``known`` already covers, and repeats."""
    covered = {e for issue in known for e in issue.expression}
    out = []
    seen: set[tuple[tuple[str, ...], str]] = set()
    for issue in found:
        path = issue.expression[0] if issue.expression else ""
        if any(p in covered for p in parent_paths(path)):
            continue
        key = (issue.expression, issue.diagnostics)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out


def load_validator(*, by_parts: bool = True) -> Validator:
    """A validator over the R4 definitions, value sets and gap list shipped as package data."""
    return Validator(
        load_r4_definitions(),
        load_required_value_sets(),
        r4b.load_r4b_differences(),
        by_parts=by_parts,
    )
