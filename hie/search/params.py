"""Search parameters (name, value pairs) -> a typed :class:`~hie.search.query.SearchQuery`.

Malformed input raises :class:`hie.errors.InvalidSearch` naming the parameter. Names
the server does not know, or knows but does not implement, are collected in
``SearchQuery.ignored`` to be reported as warnings; with ``strict=True`` (the client
sent ``Prefer: handling=strict``) they raise instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from hie.errors import InvalidSearch, Issue
from hie.search.dates import DEFAULT_OFFSET, DateRange, parse_date
from hie.search.definitions import (
    PREFIXES,
    SUPPORTED_MODIFIERS,
    UNSUPPORTED_MODIFIERS,
    ParamType,
    SearchParamDef,
    SearchRegistry,
)
from hie.search.numbers import parse_decimal
from hie.search.query import (
    ChainClause,
    Clause,
    ComponentValue,
    CompositeValue,
    DateValue,
    EverythingQuery,
    HasClause,
    Ignored,
    IgnoredKind,
    Include,
    MissingValue,
    Modifier,
    NumberValue,
    OfTypeValue,
    ParamClause,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    Summary,
    TextValue,
    TokenValue,
    Total,
    UriValue,
    Value,
)
from hie.search.text import normalize

# Parameters the R4 search page defines that this server does not implement.
UNSUPPORTED_PARAMS = frozenset(
    {"_text", "_content", "_list", "_query", "_filter", "_contained", "_containedType"}
)
# Transport parameters handled by the REST layer; never an unknown parameter.
TRANSPORT_PARAMS = frozenset({"_format", "_pretty"})
RESULT_PARAMS = frozenset(
    {"_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total"}
)
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ELEMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\[x\])?")
_MAX_CHAIN = 8  # deeper chains are refused; "any depth" within reason


def _error(name: str, reason: str) -> InvalidSearch:
    message = f"Invalid search parameter '{name}': {reason}"
    return InvalidSearch(message, [Issue("error", "invalid", message)])


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not escaped by a backslash; escapes are kept for the next level."""
    if "\\" not in text:
        return text.split(sep)  # nothing escaped (most values): the same, at C speed
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """Undo the search escapes ``\\,`` ``\\$`` ``\\|`` ``\\\\``."""
    return re.sub(r"\\([,$|\\])", r"\1", text) if "\\" in text else text


@dataclass
class _Acc:
    clauses: list[Clause] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


class QueryParser:
    """Parses search parameters against the registry. Immutable; share freely."""

    def __init__(
        self,
        registry: SearchRegistry,
        *,
        local_bases: Sequence[str] = (),
        default_offset: timedelta = DEFAULT_OFFSET,
        max_count: int = 1000,
        unindexed: Collection[tuple[str, str]] = (),
    ) -> None:
        """``unindexed``: (type, code) pairs the index cannot serve (``Extractor.unindexed``);
        they are reported as unsupported rather than silently matching nothing."""
        self.registry = registry
        self._bases = tuple(b.rstrip("/") + "/" for b in local_bases)
        self._offset = default_offset
        self._max_count = max_count
        self._unindexed = frozenset(unindexed)

    # -- entry points ------------------------------------------------------------

    def parse(
        self, resource_type: str, params: Sequence[tuple[str, str]], *, strict: bool = False
    ) -> SearchQuery:
        """The query for ``GET [base]/resource_type?params`` (or the POST form body)."""
        if not self.registry.params(resource_type):
            raise _error("(type)", f"unknown resource type {resource_type!r}")
        _refuse_nul(params)
        acc = _Acc()
        result: dict[str, str] = {}
        for name, value in params:
            base = name.split(":", 1)[0]
            if base in TRANSPORT_PARAMS:
                continue
            if base in ("_include", "_revinclude"):
                self._include(resource_type, name, value, acc)
            elif base in RESULT_PARAMS:
                if name != base:
                    raise _error(name, f"{base} takes no modifier")
                if name in result:
                    raise _error(name, "may appear only once")
                result[name] = value
            elif base in UNSUPPORTED_PARAMS:
                acc.ignored.append(Ignored(name, IgnoredKind.UNSUPPORTED, "not supported"))
            elif value == "":
                acc.ignored.append(Ignored(name, IgnoredKind.EMPTY, "empty value ignored"))
            else:
                clause = self._clause(resource_type, name, value, acc, depth=0)
                if clause is not None:
                    acc.clauses.append(clause)
        if strict:
            bad = [i for i in acc.ignored if i.kind is not IgnoredKind.EMPTY]
            if bad:
                issues = [
                    Issue("error", "not-supported", f"Parameter '{i.name}': {i.reason}")
                    for i in bad
                ]
                raise InvalidSearch(
                    "Unknown or unsupported search parameters: " + ", ".join(i.name for i in bad),
                    issues,
                )
        return SearchQuery(
            resource_type=resource_type,
            clauses=tuple(acc.clauses),
            includes=tuple(acc.includes),
            revincludes=tuple(acc.revincludes),
            sort=self._sort(resource_type, result.get("_sort")),
            count=self._count(result.get("_count")),
            summary=_enum(Summary, "_summary", result.get("_summary")),
            elements=self._elements(result.get("_elements")),
            total=_enum(Total, "_total", result.get("_total")),
            ignored=tuple(acc.ignored),
        )

    def parse_condition(self, resource_type: str, params: Sequence[tuple[str, str]]) -> SearchQuery:
        """The criteria of a conditional create, update, delete or reference.

        Stricter than a search: a criterion that cannot be understood, is empty or only
        shapes results is an error, never ignored, so a condition cannot match more
        resources than the client meant.
        """
        for name, value in params:
            base = name.split(":", 1)[0]
            if base in RESULT_PARAMS or base in ("_include", "_revinclude"):
                raise _error(name, "has no meaning in a conditional operation")
            if value == "" and base not in TRANSPORT_PARAMS:
                raise _error(name, "a condition needs a value")
        query = self.parse(resource_type, params, strict=True)
        if query.ignored:
            raise _error(query.ignored[0].name, query.ignored[0].reason)
        if not query.clauses:
            raise InvalidSearch("a conditional operation needs at least one search criterion")
        return query

    def parse_everything(
        self, params: Sequence[tuple[str, str]], *, strict: bool = False
    ) -> EverythingQuery:
        """Parameters of ``Patient/[id]/$everything``: ``_since``, ``_type``, ``_count``."""
        _refuse_nul(params)
        since: DateRange | None = None
        types: list[str] = []
        count: int | None = None
        ignored: list[Ignored] = []
        for name, value in params:
            if name in TRANSPORT_PARAMS:
                continue
            if name == "_since":
                since = self._date_only("_since", value)
            elif name == "_type":
                for t in value.split(","):
                    if not self.registry.params(t):
                        raise _error("_type", f"unknown resource type {t!r}")
                    types.append(t)
            elif name == "_count":
                count = self._count(value)
            elif name in ("start", "end"):
                ignored.append(Ignored(name, IgnoredKind.UNSUPPORTED, "not supported"))
            else:
                ignored.append(Ignored(name, IgnoredKind.UNKNOWN, "unknown parameter"))
        if strict and ignored:
            raise _error(ignored[0].name, ignored[0].reason)
        return EverythingQuery(since, tuple(dict.fromkeys(types)), count, tuple(ignored))

    # -- clauses ------------------------------------------------------------------

    def _clause(self, rtype: str, name: str, value: str, acc: _Acc, depth: int) -> Clause | None:
        if depth > _MAX_CHAIN:
            raise _error(name, f"chains deeper than {_MAX_CHAIN} are not supported")
        if name.startswith("_has:") or name == "_has":
            return self._has(rtype, name, value, acc, depth)
        head, dot, rest = name.partition(".")
        if dot:
            return self._chain(rtype, name, head, rest, value, acc, depth)
        code, _, modifier = name.partition(":")
        param = self.registry.param(rtype, code)
        if param is None:
            acc.ignored.append(
                Ignored(name, IgnoredKind.UNKNOWN, f"not a search parameter of {rtype}")
            )
            return None
        if not param.searchable or (rtype, code) in self._unindexed:
            acc.ignored.append(Ignored(name, IgnoredKind.UNSUPPORTED, "not supported"))
            return None
        return self._param_clause(param, name, modifier, value, acc)

    def _param_clause(
        self, param: SearchParamDef, name: str, modifier: str, value: str, acc: _Acc
    ) -> ParamClause | None:
        mod: Modifier | None = None
        target_type: str | None = None
        if modifier:
            if modifier in param.modifiers:
                mod = Modifier(modifier)
            elif param.type is ParamType.REFERENCE and _TYPE_NAME.fullmatch(modifier):
                if modifier not in param.targets:
                    raise _error(name, f"{modifier} is not a target type of '{param.code}'")
                mod, target_type = Modifier.TYPE, modifier
            elif modifier in UNSUPPORTED_MODIFIERS.get(param.type, ()):
                acc.ignored.append(
                    Ignored(name, IgnoredKind.UNSUPPORTED, f"modifier :{modifier} not supported")
                )
                return None
            else:
                allowed = ", ".join(f":{m}" for m in sorted(SUPPORTED_MODIFIERS[param.type]))
                raise _error(
                    name, f"unknown modifier :{modifier} for a {param.type} parameter ({allowed})"
                )
        raw_values = split_escaped(value, ",")
        if mod is Modifier.MISSING:
            if value not in ("true", "false"):
                raise _error(name, ":missing takes true or false")
            return ParamClause(name, param, mod, (MissingValue(value == "true"),))
        values = tuple(
            self._value(param, name, mod, target_type, raw) for raw in raw_values if raw != ""
        )
        if not values:
            acc.ignored.append(Ignored(name, IgnoredKind.EMPTY, "empty value ignored"))
            return None
        return ParamClause(name, param, mod, values, target_type)

    def _chain(
        self, rtype: str, name: str, head: str, rest: str, value: str, acc: _Acc, depth: int
    ) -> Clause | None:
        code, _, type_mod = head.partition(":")
        param = self.registry.param(rtype, code)
        if param is None:
            acc.ignored.append(
                Ignored(name, IgnoredKind.UNKNOWN, f"not a search parameter of {rtype}")
            )
            return None
        if param.type is not ParamType.REFERENCE:
            raise _error(name, f"'{code}' is a {param.type} parameter and cannot be chained")
        if type_mod:
            if type_mod not in param.targets:
                raise _error(name, f"{type_mod} is not a target type of '{code}'")
            candidates: tuple[str, ...] = (type_mod,)
        else:
            candidates = param.targets
        next_code = rest.partition(".")[0].partition(":")[0]
        if next_code.startswith("_has"):
            raise _error(name, "_has cannot follow a chain")
        having = [t for t in candidates if self.registry.param(t, next_code) is not None]
        if not having:
            raise _error(
                name, f"no target type of '{code}' ({', '.join(candidates)}) has '{next_code}'"
            )
        kinds = {self.registry.params(t)[next_code].type for t in having}
        if len(kinds) > 1:
            raise _error(
                name,
                f"ambiguous chain: '{next_code}' differs in type across {', '.join(having)}; "
                f"name the type, e.g. {code}:{having[0]}.{rest}",
            )
        targets = []
        for t in having:
            inner_acc = _Acc()
            inner = self._clause(t, rest, value, inner_acc, depth + 1)
            if inner is None:
                reason = inner_acc.ignored[0].reason if inner_acc.ignored else "not searchable"
                raise _error(name, f"'{rest}' on {t}: {reason}")
            targets.append((t, inner))
        return ChainClause(name, param, tuple(targets))

    def _has(self, rtype: str, name: str, value: str, acc: _Acc, depth: int) -> Clause:
        parts = name.split(":", 3)
        if len(parts) < 4 or not all(parts[1:]):
            raise _error(name, "expected _has:Type:reference-parameter:parameter")
        _, source, ref_code, inner_name = parts
        if not self.registry.params(source):
            raise _error(name, f"unknown resource type {source!r}")
        param = self.registry.param(source, ref_code)
        if param is None or param.type is not ParamType.REFERENCE:
            raise _error(name, f"'{ref_code}' is not a reference parameter of {source}")
        if rtype not in param.targets:
            raise _error(name, f"{source}.{ref_code} cannot refer to {rtype}")
        inner_acc = _Acc()
        inner = self._clause(source, inner_name, value, inner_acc, depth + 1)
        if inner is None:
            reason = inner_acc.ignored[0].reason if inner_acc.ignored else "not searchable"
            raise _error(name, f"'{inner_name}' on {source}: {reason}")
        return HasClause(name, source, param, inner)

    # -- values -------------------------------------------------------------------

    def _value(
        self,
        param: SearchParamDef,
        name: str,
        mod: Modifier | None,
        target_type: str | None,
        raw: str,
    ) -> Value:
        t = param.type
        if t is ParamType.TOKEN:
            if mod is Modifier.TEXT:
                return TextValue(normalize(unescape(raw)))
            if mod is Modifier.OF_TYPE:
                return self._of_type(name, raw)
            return self._token(name, raw)
        if t is ParamType.REFERENCE:
            if mod is Modifier.IDENTIFIER:
                return self._token(name, raw)
            return self._reference(param, name, target_type, unescape(raw))
        if t is ParamType.COMPOSITE:
            return self._composite(param, name, raw)
        return self._simple(t, name, raw)

    def _simple(self, t: ParamType, name: str, raw: str) -> ComponentValue:
        if t is ParamType.STRING:
            text = unescape(raw)
            return StringValue(text, normalize(text))
        if t is ParamType.URI:
            return UriValue(unescape(raw))
        if t is ParamType.TOKEN:
            return self._token(name, raw)
        if t is ParamType.DATE:
            prefix, rest = self._prefix(name, raw)
            try:
                return DateValue(prefix, parse_date(rest, self._offset), rest)
            except ValueError as exc:
                raise _error(name, str(exc)) from None
        if t is ParamType.NUMBER:
            prefix, rest = self._prefix(name, raw)
            return NumberValue(prefix, self._decimal(name, rest))
        if t is ParamType.QUANTITY:
            prefix, rest = self._prefix(name, raw)
            parts = split_escaped(rest, "|")
            if len(parts) > 3:
                raise _error(name, f"{raw!r} is not number|system|code")
            number = self._decimal(name, parts[0])
            system = unescape(parts[1]) if len(parts) > 1 and parts[1] else None
            code = unescape(parts[2]) if len(parts) > 2 and parts[2] else None
            if system is not None and code is None:
                raise _error(name, f"{raw!r}: a system needs a code")
            return QuantityValue(prefix, number, system, code)
        if t is ParamType.REFERENCE:
            return ReferenceValue(None, unescape(raw))
        raise _error(name, f"{t} parameters cannot be searched")

    def _prefix(self, name: str, raw: str) -> tuple[Prefix, str]:
        head = raw[:2]
        if head.isalpha():
            if head not in PREFIXES:
                raise _error(name, f"unknown prefix {head!r} (use one of {', '.join(PREFIXES)})")
            return Prefix(head), raw[2:]
        return Prefix.EQ, raw

    def _decimal(self, name: str, text: str) -> Decimal:
        try:
            return parse_decimal(text)
        except ValueError as exc:
            raise _error(name, str(exc)) from None

    def _token(self, name: str, raw: str) -> TokenValue:
        parts = split_escaped(raw, "|")
        if len(parts) == 1:
            return TokenValue(None, unescape(raw), match_system=False)
        if len(parts) > 2:
            raise _error(name, f"{raw!r} is not [system|]code")
        system, code = unescape(parts[0]) or None, unescape(parts[1]) or None
        if system is None and code is None:
            raise _error(name, "'|' needs a system or a code")
        return TokenValue(system, code, match_system=True)

    def _of_type(self, name: str, raw: str) -> OfTypeValue:
        parts = split_escaped(raw, "|")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise _error(name, f"{raw!r}: :of-type takes type-system|type-code|value")
        return OfTypeValue(unescape(parts[0]) or None, unescape(parts[1]), unescape(parts[2]))

    def _reference(
        self, param: SearchParamDef, name: str, target_type: str | None, raw: str
    ) -> ReferenceValue:
        for base in self._bases:
            if raw.startswith(base):
                raw = raw[len(base) :]
                break
        if "://" in raw or raw.startswith("urn:"):
            url, _, canonical_version = raw.partition("|")
            return ReferenceValue(None, None, canonical_version or None, url)
        parts = raw.split("/")
        version: str | None = None
        if len(parts) == 4 and parts[2] == "_history":
            parts, version = parts[:2], parts[3]
        if len(parts) == 1:
            rtype, rid = target_type, parts[0]
        elif len(parts) == 2:
            rtype, rid = parts
            if rtype not in param.targets:
                raise _error(name, f"{rtype} is not a target type of '{param.code}'")
            if target_type is not None and rtype != target_type:
                raise _error(name, f"{raw!r} contradicts the :{target_type} modifier")
        else:
            raise _error(name, f"{raw!r} is not [Type/]id or an absolute URL")
        if not _ID.fullmatch(rid):
            raise _error(name, f"{rid!r} is not a valid id")
        return ReferenceValue(rtype, rid, version)

    def _composite(self, param: SearchParamDef, name: str, raw: str) -> CompositeValue:
        parts = split_escaped(raw, "$")
        if len(parts) != len(param.components):
            codes = "$".join(c.code for c in param.components)
            raise _error(name, f"{raw!r} needs {len(param.components)} parts joined by $: {codes}")
        values: list[ComponentValue] = []
        for comp, part in zip(param.components, parts, strict=True):
            own = self.registry.param(param.resource_type, comp.code)
            if comp.type is ParamType.REFERENCE and own is not None:
                values.append(self._reference(own, name, None, unescape(part)))
            else:
                values.append(self._simple(comp.type, name, part))
        return CompositeValue(tuple(values))

    # -- result parameters ----------------------------------------------------------

    def _include(self, rtype: str, name: str, value: str, acc: _Acc) -> None:
        base, _, mod = name.partition(":")
        if mod not in ("", "iterate", "recurse"):
            raise _error(name, f"unknown modifier :{mod} (use :iterate)")
        reverse = base == "_revinclude"
        iterate = mod != ""
        if value == "*":
            acc.includes.append(Include(rtype, None, None, iterate, reverse))
            return
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise _error(name, f"{value!r} is not Type:parameter[:targetType] or *")
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not self.registry.params(source):
            raise _error(name, f"unknown resource type {source!r}")
        if not reverse and not iterate and source != rtype:
            raise _error(name, f"{source} is not the searched type {rtype} (use :iterate)")
        if code == "*":
            param = None
        else:
            found = self.registry.param(source, code)
            if found is None or found.type is not ParamType.REFERENCE:
                raise _error(name, f"'{code}' is not a reference parameter of {source}")
            if (source, code) in self._unindexed:
                raise _error(name, f"'{code}' of {source} is not indexed")
            param = found
            if target is not None and target not in found.targets:
                raise _error(name, f"{target} is not a target type of {source}.{code}")
            if reverse and not iterate and rtype not in found.targets:
                raise _error(name, f"{source}.{code} cannot refer to {rtype}")
        item = Include(source, param, target, iterate, reverse)
        (acc.revincludes if reverse else acc.includes).append(item)

    def _sort(self, rtype: str, value: str | None) -> tuple[SortKey, ...]:
        if value is None:
            return ()
        keys = []
        for item in value.split(","):
            desc = item.startswith("-")
            code = item[1:] if desc else item
            param = self.registry.param(rtype, code)
            if param is None:
                raise _error("_sort", f"'{code}' is not a search parameter of {rtype}")
            if param.type in (ParamType.COMPOSITE, ParamType.SPECIAL) or not param.searchable:
                raise _error("_sort", f"cannot sort by {param.type} parameter '{code}'")
            if (rtype, code) in self._unindexed:
                raise _error("_sort", f"'{code}' is not indexed, so it cannot sort")
            keys.append(SortKey(param, desc))
        return tuple(keys)

    def _count(self, value: str | None) -> int | None:
        if value is None:
            return None
        if not value.isdigit():
            raise _error("_count", f"{value!r} is not a non-negative integer")
        return min(int(value), self._max_count)

    def _elements(self, value: str | None) -> tuple[str, ...]:
        if value is None:
            return ()
        items = [v.strip() for v in value.split(",") if v.strip()]
        for item in items:
            if not _ELEMENT.fullmatch(item.partition(".")[2] or item):
                raise _error("_elements", f"{item!r} is not an element name")
        return tuple(items)

    def _date_only(self, name: str, value: str) -> DateRange:
        try:
            return parse_date(value, self._offset)
        except ValueError as exc:
            raise _error(name, str(exc)) from None


_E = TypeVar("_E", Summary, Total)


def _enum(kind: type[_E], name: str, value: str | None) -> _E | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise _error(name, f"{value!r} is not one of {allowed}") from None


def _refuse_nul(params: Sequence[tuple[str, str]]) -> None:
    # No FHIR value holds NUL, and PostgreSQL text cannot: refuse it here, as bad input,
    # rather than fail in the database (or in the audit record of the query).
    for name, value in params:
        if "\x00" in name or "\x00" in value:
            raise _error(name.replace("\x00", "?"), "contains a NUL character")
