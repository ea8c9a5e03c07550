"""Walk resource JSON against the FHIR R4 element definitions.

This is the R4 half of validation (:mod:`hie.fhir.validation` adds the R4B models).
It owns what the R4B models cannot be trusted with for R4:

- resource types (top level, ``contained``, ``Bundle.entry.resource``, ...);
- which elements exist (so R4B-only elements are rejected), array or single, and
  the JSON type of every primitive (the models coerce ``"true"`` to ``true``);
- required elements and choice groups, ``_name`` primitive extensions, nulls and
  empty arrays, objects and strings;
- codes of required value sets on ``code`` elements;
- the R4 format of primitive types whose R4B check is laxer or wrong
  (:data:`R4_FORMATS`).

The walker is on the write path of every resource, so it is written for speed: one
dict lookup per member, paths built only for objects and for issues.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hie.errors import Issue
from hie.fhir.definitions import ANY_RESOURCE, ElementDef, R4Definitions, TypeDef
from hie.fhir.types import SERVED_TYPES, unserved_reason
from terminology.valuesets import ValueSets

#: Primitive types whose R4 regex the walker checks itself, because the R4B models
#: accept values R4 forbids (ids over 64 characters, blank markdown, URIs with
#: spaces, junk base64, bare or upper-case uuids) or reject valid R4 values (uuids
#: that are not version 4).
R4_FORMATS = frozenset({"id", "markdown", "uri", "url", "canonical", "base64Binary", "uuid"})
#: Primitive types whose R4B check is wrong, so only the walker judges them.
R4B_UNRELIABLE = frozenset({"uuid"})

# Member kinds.
COMPLEX, RESOURCE, BOOLEAN, INTEGER, NUMBER, STRING, EXTENSION = range(7)

_JSON_KINDS = {"boolean": BOOLEAN, "integer": INTEGER, "number": NUMBER, "string": STRING}
_KIND_WORDS = {
    BOOLEAN: "a JSON boolean",
    INTEGER: "a JSON integer",
    NUMBER: "a JSON number",
    STRING: "a JSON string",
    COMPLEX: "a JSON object",
    RESOURCE: "a JSON object (a resource)",
    EXTENSION: "a JSON object (the primitive's id and extensions)",
}
_MAX_LISTED_CODES = 12


FormatCheck = Callable[[str], bool]


def _format_check(type_name: str, regex: str) -> FormatCheck:
    """The R4 regex of a primitive as a check, with C-speed shortcuts for common values.

    Each shortcut only ever accepts what the regex accepts; anything else goes to it.
    """
    pattern = re.compile(regex)
    full = pattern.fullmatch
    if type_name in ("uri", "url", "canonical"):  # \S*: no whitespace at all

        def no_space(value: str) -> bool:
            if value.isascii() and value.isprintable() and " " not in value:
                return True
            return full(value) is not None

        return no_space
    if type_name == "base64Binary":  # (\s*([0-9a-zA-Z\+/=]){4}\s*)+ is slow on big data
        alphabet = re.compile(r"[0-9a-zA-Z+/=]+").fullmatch

        def base64(value: str) -> bool:
            if len(value) % 4 == 0 and alphabet(value) is not None:
                return True
            return full(value) is not None

        return base64
    return lambda value: full(value) is not None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(eq=False, slots=True)
class Member:
    """A JSON member of a type, compiled for the walker."""

    name: str
    element: ElementDef
    kind: int
    array: bool
    fhir_path: str  # the name in FHIRPath: `_given` is `given`
    target: Struct | None = None  # COMPLEX, EXTENSION
    codes: frozenset[str] | None = None
    check: FormatCheck | None = None  # the R4 format, for R4_FORMATS
    choice_member: str | None = None  # valueString for valueString and _valueString
    sibling: str | None = None  # `_name` for name, name for `_name` (primitives)
    gap: bool = False  # the R4B models cannot judge it
    plain: bool = False  # a string primitive with no code or format check


@dataclass(eq=False, slots=True)
class Struct:
    """A type (resource, datatype or backbone), compiled for the walker."""

    name: str
    is_resource: bool
    members: dict[str, Member] = field(default_factory=dict)
    # Members the walker's fast path takes: plain strings, and objects (is it an
    # array, of which type). Choices and gaps take the full path.
    fast_strings: frozenset[str] = frozenset()
    fast_objects: dict[str, tuple[bool, Struct, Member]] = field(default_factory=dict)
    required: tuple[tuple[str, str | None], ...] = ()  # (name, `_name` or None)
    required_choices: tuple[tuple[str, frozenset[str]], ...] = ()


@dataclass(frozen=True, slots=True)
class GapValue:
    """A value the R4B models cannot judge, for separate checking."""

    member: Member
    value: Any
    path: str


def _issue(code: str, path: str, message: str) -> Issue:
    return Issue("error", code, message, (path,))


def parent_paths(path: str) -> Iterator[str]:
    """``a.b[0].c`` -> ``a.b[0].c``, ``a.b[0]``, ``a.b``, ``a``."""
    yield path
    end = len(path)
    while end > 0:
        end = max(path.rfind(".", 0, end), path.rfind("[", 0, end))
        if end <= 0:
            return
        yield path[:end]


class StructureChecker:
    """Checks resource JSON against the R4 definitions; see the module docstring."""

    def __init__(
        self,
        definitions: R4Definitions,
        value_sets: ValueSets,
        gaps: Mapping[str, Mapping[str, str]] | None = None,
        r4b_only: Mapping[str, Collection[str]] | None = None,
        served: frozenset[str] = SERVED_TYPES,
    ) -> None:
        self._served = served
        self._r4b_only = r4b_only or {}
        self._value_sets = value_sets
        self._structs: dict[str, Struct] = {}
        for name, typedef in definitions.types.items():
            self._structs[name] = Struct(name, typedef.kind == "resource" and not typedef.abstract)
        checks = {
            p.name: _format_check(p.name, p.regex)
            for p in definitions.primitives.values()
            if p.regex is not None and p.name in R4_FORMATS
        }
        element_struct = self._structs["Element"]
        for name, typedef in definitions.types.items():
            self._compile(typedef, definitions, checks, element_struct, (gaps or {}).get(name, {}))

    def _compile(
        self,
        typedef: TypeDef,
        definitions: R4Definitions,
        checks: Mapping[str, FormatCheck],
        element_struct: Struct,
        gaps: Mapping[str, str],
    ) -> None:
        struct = self._structs[typedef.name]
        required: list[tuple[str, str | None]] = []
        choices: dict[str, set[str]] = {}
        for el in typedef.elements.values():
            if el.primitive:
                primitive = definitions.primitives[el.type]
                member = Member(
                    el.name,
                    el,
                    _JSON_KINDS[primitive.json],
                    el.array,
                    el.name,
                    check=checks.get(el.type),
                    gap=el.name in gaps or el.type in R4B_UNRELIABLE,
                )
                if el.value_set is not None:
                    member.codes = self._value_sets.codes(el.value_set)
                if el.extensible:
                    shadow = "_" + el.name
                    member.sibling = shadow
                    struct.members[shadow] = Member(
                        shadow,
                        el,
                        EXTENSION,
                        el.array,
                        el.name,
                        target=element_struct,
                        choice_member=el.name if el.choice else None,
                        sibling=el.name,
                        gap=shadow in gaps,
                    )
            elif el.type == ANY_RESOURCE:
                member = Member(el.name, el, RESOURCE, el.array, el.name, gap=el.name in gaps)
            else:
                member = Member(
                    el.name,
                    el,
                    COMPLEX,
                    el.array,
                    el.name,
                    target=self._structs[el.type],
                    gap=el.name in gaps,
                )
            member.plain = member.kind == STRING and member.codes is None and member.check is None
            if el.choice:
                member.choice_member = el.name
                choices.setdefault(el.choice, set()).add(el.name)
                if member.sibling:
                    choices[el.choice].add(member.sibling)
            struct.members[el.name] = member
            if el.required:
                required.append((el.name, member.sibling))
        strings = set()
        for name, member in struct.members.items():
            if member.gap or member.choice_member is not None:
                continue
            if member.plain and not member.array:
                strings.add(name)
            elif member.kind == COMPLEX and member.target is not None:
                struct.fast_objects[name] = (member.array, member.target, member)
        struct.fast_strings = frozenset(strings)
        struct.required = tuple(required)
        struct.required_choices = tuple(
            (group, frozenset(choices[group])) for group in typedef.required_choices
        )

    # -- public API ---------------------------------------------------------------

    def check(
        self, resource: Any, issues: list[Issue], gap_values: list[GapValue] | None = None
    ) -> str | None:
        """Append the issues of ``resource`` (and collect its gap values).

        Returns the resource type when it is served, else ``None``.
        """
        if not isinstance(resource, dict):
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"A resource must be a JSON object, not {_json_type(resource)}",
                )
            )
            return None
        rtype = resource.get("resourceType")
        if not (isinstance(rtype, str) and rtype in self._served):
            issues.append(self._bad_resource_type(rtype, "resourceType"))
            return None
        gaps: list[GapValue] = [] if gap_values is None else gap_values
        self._object(resource, self._structs[rtype], rtype, issues, gaps)
        return rtype

    def struct(self, name: str) -> Struct | None:
        return self._structs.get(name)

    def locate(
        self, root: Struct, loc: Sequence[int | str], data: Any, base: str
    ) -> tuple[str, bool, Member | None]:
        """Resolve a model error location against ``data`` (of type ``root``, at ``base``).

        Returns its FHIRPath, whether it lies in a gap, and the member it ends at.
        """
        path = base
        struct: Struct | None = root
        member: Member | None = None
        obj = data
        pending_resource = False
        through_gap = False
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
                obj = obj[part] if isinstance(obj, list) and -len(obj) <= part < len(obj) else None
                continue
            if pending_resource:
                rtype = obj.get("resourceType") if isinstance(obj, dict) else None
                struct = self._structs.get(rtype) if isinstance(rtype, str) else None
                pending_resource = False
            member = struct.members.get(part) if struct is not None else None
            path += "." + (member.fhir_path if member is not None else part.lstrip("_"))
            obj = obj.get(part) if isinstance(obj, dict) else None
            if member is None:
                struct = None
                continue
            through_gap = through_gap or member.gap
            struct = member.target
            pending_resource = member.kind == RESOURCE
        return path, through_gap, member

    # -- the walk -----------------------------------------------------------------

    def _bad_resource_type(self, rtype: Any, path: str) -> Issue:
        if rtype is None:
            return _issue("structure", path, "Missing resourceType")
        return _issue("structure", path, f"Unsupported resourceType: {unserved_reason(rtype)}")

    def _object(
        self,
        obj: dict[str, Any],
        struct: Struct,
        path: str,
        issues: list[Issue],
        gaps: list[GapValue],
    ) -> None:
        members = struct.members
        fast_strings = struct.fast_strings
        fast_objects = struct.fast_objects
        choice_seen: dict[str, str] | None = None
        for name, value in obj.items():
            # Fast paths for the common members; anything unusual falls through.
            if name in fast_strings:
                if type(value) is str and value and "\x00" not in value:
                    continue
            elif (hit := fast_objects.get(name)) is not None:
                many, target, known = hit
                if not many:
                    if type(value) is dict and value:
                        self._object(value, target, f"{path}.{name}", issues, gaps)
                        continue
                elif type(value) is list and value:
                    base = f"{path}.{name}"
                    for i, item in enumerate(value):
                        if type(item) is dict and item:
                            self._object(item, target, f"{base}[{i}]", issues, gaps)
                        else:
                            issues.append(self._not_object(known, item, f"{base}[{i}]"))
                    continue
            member = members.get(name)
            if member is None:
                if name != "resourceType" or not struct.is_resource:
                    issues.append(self._unknown(struct, name, path))
                continue
            if member.choice_member is not None:
                group = member.element.choice
                assert group is not None
                if choice_seen is None:
                    choice_seen = {group: member.choice_member}
                elif choice_seen.setdefault(group, member.choice_member) != member.choice_member:
                    issues.append(
                        _issue(
                            "structure",
                            f"{path}.{member.fhir_path}",
                            f"Only one of {group}[x] may be present, not both "
                            f"{choice_seen[group]} and {member.choice_member}",
                        )
                    )
            if member.gap:
                gaps.append(GapValue(member, value, f"{path}.{member.fhir_path}"))
            if member.array:
                if not isinstance(value, list):
                    issues.append(self._shape(member, value, path, True))
                elif not value:
                    issues.append(
                        _issue(
                            "structure", f"{path}.{member.fhir_path}", "Arrays must not be empty"
                        )
                    )
                else:
                    self._items(obj, member, value, path, issues, gaps)
            elif member.plain and type(value) is str and value and "\x00" not in value:
                continue  # the common case, kept cheap
            elif member.kind == COMPLEX and isinstance(value, dict) and value:
                assert member.target is not None
                self._object(value, member.target, f"{path}.{member.fhir_path}", issues, gaps)
            elif isinstance(value, list):
                issues.append(self._shape(member, value, path, False))
            else:
                self._value(obj, member, value, path, -1, issues, gaps)
        for name, shadow in struct.required:
            if name not in obj and (shadow is None or shadow not in obj):
                issues.append(
                    _issue(
                        "required",
                        f"{path}.{name}",
                        f"Missing required element {name} of {struct.name}",
                    )
                )
        for group, names in struct.required_choices:
            if names.isdisjoint(obj):
                issues.append(
                    _issue(
                        "required",
                        f"{path}.{group}",
                        f"Missing required element {group}[x] of {struct.name}",
                    )
                )

    def _items(
        self,
        obj: dict[str, Any],
        member: Member,
        items: list[Any],
        path: str,
        issues: list[Issue],
        gaps: list[GapValue],
    ) -> None:
        kind = member.kind
        if kind == COMPLEX:
            target = member.target
            assert target is not None
            base = f"{path}.{member.fhir_path}"
            for i, item in enumerate(items):
                if isinstance(item, dict) and item:
                    self._object(item, target, f"{base}[{i}]", issues, gaps)
                else:
                    issues.append(self._not_object(member, item, f"{base}[{i}]"))
            return
        if member.sibling is not None and (None in items or member.sibling in obj):
            self._check_pairs(obj, member, items, path, issues)
        plain = member.plain
        for i, item in enumerate(items):
            if plain and type(item) is str and item and "\x00" not in item:
                continue
            if item is None and member.sibling is not None:
                continue  # judged by _check_pairs
            self._value(obj, member, item, path, i, issues, gaps)

    def _value(
        self,
        obj: dict[str, Any],
        member: Member,
        value: Any,
        path: str,
        index: int,
        issues: list[Issue],
        gaps: list[GapValue],
    ) -> None:
        kind = member.kind
        if kind == STRING:
            if type(value) is str:
                if not value:
                    issues.append(
                        _issue("value", self._at(member, path, index), "Strings must not be empty")
                    )
                elif "\x00" in value:
                    # R4 strings exclude control characters, and PostgreSQL text cannot
                    # hold NUL: refuse it here, for every path that writes.
                    issues.append(
                        _issue(
                            "value",
                            self._at(member, path, index),
                            "Strings must not contain the NUL character (U+0000)",
                        )
                    )
                elif member.codes is not None and value not in member.codes:
                    issues.append(self._bad_code(member, value, self._at(member, path, index)))
                elif member.check is not None and not member.check(value):
                    issues.append(
                        _issue(
                            "value",
                            self._at(member, path, index),
                            f"{value!r} is not a valid {member.element.type}",
                        )
                    )
                return
        elif kind in (COMPLEX, EXTENSION):
            if isinstance(value, dict) and value:
                assert member.target is not None
                self._object(value, member.target, self._at(member, path, index), issues, gaps)
            elif value is not None or kind == COMPLEX or index < 0:
                issues.append(self._not_object(member, value, self._at(member, path, index)))
            return
        elif kind == BOOLEAN:
            if value is True or value is False:
                return
        elif kind == INTEGER:
            if type(value) is int:
                return
        elif kind == NUMBER:
            if type(value) is int or type(value) is float:
                return
        elif kind == RESOURCE:
            at = self._at(member, path, index)
            if not isinstance(value, dict):
                issues.append(self._not_object(member, value, at))
                return
            rtype = value.get("resourceType")
            if not (isinstance(rtype, str) and rtype in self._served):
                issues.append(self._bad_resource_type(rtype, f"{at}.resourceType"))
                return
            self._object(value, self._structs[rtype], at, issues, gaps)
            return
        at = self._at(member, path, index)
        if value is None:
            issues.append(_issue("structure", at, "null is not allowed here"))
        else:
            issues.append(
                _issue(
                    "value",
                    at,
                    f"{member.fhir_path} must be {_KIND_WORDS[kind]} ({member.element.type}), "
                    f"not {_json_type(value)}",
                )
            )

    def _check_pairs(
        self,
        obj: dict[str, Any],
        member: Member,
        items: list[Any],
        path: str,
        issues: list[Issue],
    ) -> None:
        """Nulls in a primitive array and its `_name` twin: one of the pair must be set.

        The twins must have the same length; the value side reports what both share.
        """
        assert member.sibling is not None
        twin = obj.get(member.sibling)
        other: list[Any] = twin if isinstance(twin, list) else []
        paired = isinstance(twin, list)
        if paired and len(other) != len(items):
            if member.kind != EXTENSION:
                issues.append(
                    _issue(
                        "structure",
                        f"{path}.{member.fhir_path}",
                        f"{member.fhir_path} and _{member.fhir_path} must have the same length",
                    )
                )
            return
        for i, item in enumerate(items):
            # The value side reports a pair; an unpaired `_name` reports its own nulls.
            reports = member.kind != EXTENSION or not paired
            if item is None and (other[i] if paired else None) is None and reports:
                issues.append(
                    _issue(
                        "structure",
                        self._at(member, path, i),
                        f"null is not allowed here: neither {member.fhir_path}[{i}] "
                        f"nor _{member.fhir_path}[{i}] has content",
                    )
                )

    # -- issue builders -----------------------------------------------------------

    @staticmethod
    def _at(member: Member, path: str, index: int) -> str:
        return f"{path}.{member.fhir_path}" if index < 0 else f"{path}.{member.fhir_path}[{index}]"

    def _unknown(self, struct: Struct, name: Any, path: str) -> Issue:
        if not isinstance(name, str):
            return _issue("structure", path, f"Member names must be strings, not {name!r}")
        shown = name.lstrip("_") or name
        message = f"Unknown element {name!r}: {struct.name} has no such element in FHIR R4"
        if name in self._r4b_only.get(struct.name, ()):
            message += " (it was added in R4B)"
        if name.startswith("_") and name[1:] in struct.members:
            message = f"{name[1:]} is not a primitive that can carry _{name[1:]}"
        return _issue("structure", f"{path}.{shown}", message)

    @staticmethod
    def _shape(member: Member, value: Any, path: str, want_array: bool) -> Issue:
        what = "an array" if want_array else "a single value, not an array"
        return _issue(
            "structure",
            f"{path}.{member.fhir_path}",
            f"{member.fhir_path} must be {what} (max cardinality "
            f"{'*' if want_array else '1'}), got {_json_type(value)}",
        )

    @staticmethod
    def _not_object(member: Member, value: Any, at: str) -> Issue:
        if isinstance(value, dict):
            return _issue("structure", at, "Objects must not be empty")
        if value is None:
            return _issue("structure", at, "null is not allowed here")
        return _issue(
            "structure",
            at,
            f"{member.fhir_path} must be {_KIND_WORDS[member.kind]} "
            f"({member.element.type}), not {_json_type(value)}",
        )

    @staticmethod
    def _bad_code(member: Member, code: str, at: str) -> Issue:
        codes = sorted(member.codes or ())
        listed = " | ".join(codes[:_MAX_LISTED_CODES])
        if len(codes) > _MAX_LISTED_CODES:
            listed += f" | ... ({len(codes)} codes)"
        return _issue(
            "code-invalid",
            at,
            f"{code!r} is not in the required value set {member.element.value_set} ({listed})",
        )
