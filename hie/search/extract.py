"""Resource -> index rows, driven by the search parameter definitions.

An :class:`Extractor` compiles, once, every parameter expression of every resource type
into typed branches (:mod:`hie.search.fhirpath`) and pairs each branch with a row
builder for (parameter type, FHIR type): a token from a CodeableConcept, a date range
from a Period, and so on. :meth:`Extractor.extract` then only walks dict keys and builds
rows. Expressions outside the compiled subset are evaluated with ``fhirpathpy`` when it
is installed; :meth:`Extractor.coverage` says which parameters took which route.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hie.search import fhirpath
from hie.search.dates import DATE_MAX, DATE_MIN, DEFAULT_OFFSET, date_bounds
from hie.search.definitions import ParamType, SearchParamDef, SearchRegistry
from hie.search.numbers import UCUM, ucum_canonical
from hie.search.rows import (
    ComponentRow,
    CompositeRow,
    DateRow,
    IndexRow,
    NumberRow,
    OfTypeRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    TokenTextRow,
    UriRow,
)
from hie.search.text import is_cjk, normalize

Out = list[Any]
Builder = Callable[[str, Any, Out], None]
Evaluator = Callable[[Mapping[str, Any]], list[Any]]


class Route(enum.StrEnum):
    COMPILED = "compiled"  # compiled to key walks
    FALLBACK = "fallback"  # evaluated by fhirpathpy per resource
    COLUMN = "column"  # _id/_lastUpdated: a column of the resource table, no rows
    UNINDEXED = "unindexed"  # no expression (_text, _content, special) or no row builder


@dataclass(frozen=True, slots=True)
class Coverage:
    resource_type: str
    code: str
    route: Route
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Part:
    get: Evaluator
    build: Builder
    first_key: str | None = None  # the top-level key every value is under (None: unknown)


def _keys(parts: Iterable[_Part]) -> frozenset[str] | None:
    keys = set()
    for part in parts:
        if part.first_key is None:
            return None
        keys.add(part.first_key)
    return frozenset(keys)


@dataclass(frozen=True, slots=True)
class _Plan:
    code: str
    parts: tuple[_Part, ...]
    keys: frozenset[str] | None  # run only when the resource has one of these keys

    def run(self, resource: Mapping[str, Any], out: Out) -> None:
        code = self.code
        for part in self.parts:
            build = part.build
            for value in part.get(resource):
                build(code, value, out)


@dataclass(frozen=True, slots=True)
class _CompositePlan:
    """Per context element (an Observation, each Observation.component), its components."""

    code: str
    # Per context: its evaluator and the components, last component first (the value
    # component is the rare one, so a missing value stops the work early).
    contexts: tuple[tuple[Evaluator, tuple[tuple[str, tuple[_Part, ...]], ...]], ...]
    keys: frozenset[str] | None

    def run(self, resource: Mapping[str, Any], out: Out) -> None:
        code = self.code
        for get, components in self.contexts:
            for element in get(resource):
                columns: list[list[ComponentRow]] = []
                for ccode, comp in components:
                    got: list[Any] = []
                    for cpart in comp:
                        for value in cpart.get(element):
                            cpart.build(ccode, value, got)
                    values = [r for r in got if not isinstance(r, TokenTextRow | OfTypeRow)]
                    if not values:
                        break
                    columns.append(values)
                else:
                    columns.reverse()
                    for combo in itertools.product(*columns):
                        out.append(CompositeRow(code, combo))


class Extractor:
    """Turns resources into index rows; build once, share freely (immutable)."""

    def __init__(
        self,
        registry: SearchRegistry,
        *,
        local_bases: Sequence[str] = (),
        default_offset: timedelta = DEFAULT_OFFSET,
        resource_types: Iterable[str] | None = None,
        fallback: Callable[[str], Evaluator] | None = None,
    ) -> None:
        """``local_bases``: this server's base URLs ("https://hie.example/fhir"); absolute
        references under them index as local ``Type/id``. ``fallback`` compiles an
        expression the subset cannot (default: fhirpathpy if installed)."""
        self.registry = registry
        self._bases = tuple(b.rstrip("/") + "/" for b in local_bases)
        self._offset = default_offset
        self._types = fhirpath.ElementTypes(registry.element_types)
        self._fallback = fallback if fallback is not None else _fhirpathpy_compiler()
        self._plans: dict[str, tuple[_Plan | _CompositePlan, ...]] = {}
        self._coverage: list[Coverage] = []
        types = registry.resource_types if resource_types is None else resource_types
        for rtype in types:
            plans: list[_Plan | _CompositePlan] = []
            for param in registry.params(rtype).values():
                plan = self._compile(param)
                if plan is not None:
                    plans.append(plan)
            self._plans[rtype] = tuple(plans)

    def coverage(self) -> list[Coverage]:
        """How each parameter of each compiled type is indexed (and why not, if not)."""
        return list(self._coverage)

    def unindexed(self) -> frozenset[tuple[str, str]]:
        """(type, code) of the parameters that have no index rows (searches cannot use them)."""
        return frozenset(
            (c.resource_type, c.code) for c in self._coverage if c.route is Route.UNINDEXED
        )

    def extract(self, resource: Mapping[str, Any]) -> list[IndexRow]:
        """The index rows of ``resource`` (duplicates removed, order stable)."""
        out: Out = []
        for plan in self._plans.get(resource.get("resourceType", ""), ()):
            keys = plan.keys
            if keys is None or not keys.isdisjoint(resource):
                plan.run(resource, out)
        return list(dict.fromkeys(out))

    # -- compilation ---------------------------------------------------------------

    def _note(self, p: SearchParamDef, route: Route, reason: str = "") -> None:
        self._coverage.append(Coverage(p.resource_type, p.code, route, reason))

    def _compile(self, p: SearchParamDef) -> _Plan | _CompositePlan | None:
        if p.column is not None:
            self._note(p, Route.COLUMN)
            return None
        if p.expression is None or p.type is ParamType.SPECIAL:
            self._note(p, Route.UNINDEXED, "no expression" if p.expression is None else "special")
            return None
        try:
            branches = fhirpath.compile_branches(
                fhirpath.parse(p.expression), p.resource_type, self._types
            )
            plan: _Plan | _CompositePlan
            if p.type is ParamType.COMPOSITE:
                plan = self._composite(p, branches)
            else:
                parts = self._parts(p.type, branches)
                if not parts:
                    types = sorted({b.type for b in branches})
                    self._note(p, Route.UNINDEXED, f"no {p.type} row builder for {types}")
                    return None
                plan = _Plan(p.code, parts, _keys(parts))
        except fhirpath.Unsupported as exc:
            if self._fallback is None or p.type is ParamType.COMPOSITE:
                self._note(p, Route.UNINDEXED, str(exc))
                return None
            evaluate = self._fallback(p.expression)
            self._note(p, Route.FALLBACK, str(exc))
            return _Plan(p.code, (_Part(evaluate, self._sniffing_builder(p.type)),), None)
        self._note(p, Route.COMPILED)
        return plan

    def _parts(self, ptype: ParamType, branches: list[fhirpath.Branch]) -> tuple[_Part, ...]:
        parts = []
        for b in branches:
            build = self._builder(ptype, b.type)
            if build is not None:
                first = b.steps[0][1] if b.steps and b.steps[0][0] == "key" else None
                parts.append(_Part(fhirpath.getter(b.steps), build, first))
        return tuple(parts)

    def _composite(self, p: SearchParamDef, branches: list[fhirpath.Branch]) -> _CompositePlan:
        if not p.components:
            raise fhirpath.Unsupported("composite without resolvable components")
        contexts = []
        keys: set[str] | None = set()
        for b in branches:
            comps = []
            for c in p.components:
                sub = fhirpath.compile_branches(
                    fhirpath.parse(c.expression), p.resource_type, self._types, b.type
                )
                parts = self._parts(c.type, sub)
                if not parts:
                    raise fhirpath.Unsupported(f"component {c.code} has no row builder")
                comps.append((c.code, parts))
            contexts.append((fhirpath.getter(b.steps), tuple(reversed(comps))))
            if b.steps and b.steps[0][0] == "key":
                first: frozenset[str] | None = frozenset({b.steps[0][1]})
            else:  # the resource itself is the context: its value component decides
                first = _keys(comps[-1][1])
            keys = None if keys is None or first is None else keys | first
        return _CompositePlan(p.code, tuple(contexts), None if keys is None else frozenset(keys))

    def _builder(self, ptype: ParamType, ftype: str) -> Builder | None:
        table = _BUILDERS.get(ptype, {})
        if ftype in table:
            return table[ftype]
        if ptype is ParamType.DATE and ftype in ("date", "dateTime", "instant"):
            return self._date_builder()
        if ptype is ParamType.DATE and ftype == "Period":
            return self._period_builder()
        if ptype is ParamType.DATE and ftype == "Timing":
            return self._timing_builder()
        if ptype is ParamType.REFERENCE and ftype == "Reference":
            return self._reference_builder()
        if ptype is ParamType.REFERENCE and ftype in ("canonical", "uri", "url"):
            return _canonical_reference
        return None

    # -- builders needing configuration ------------------------------------------------

    def _date_builder(self) -> Builder:
        offset = int(self._offset.total_seconds())

        def build(code: str, value: Any, out: Out) -> None:
            if value.__class__ is str:
                try:
                    low, high, _ = date_bounds(value, offset)
                except ValueError:
                    return
                out.append(DateRow(code, low, high))

        return build

    def _period_builder(self) -> Builder:
        offset = int(self._offset.total_seconds())

        def build(code: str, value: Any, out: Out) -> None:
            if not isinstance(value, dict):
                return
            start, end = value.get("start"), value.get("end")
            if start is None and end is None:
                return
            try:
                low = date_bounds(start, offset)[0] if isinstance(start, str) else DATE_MIN
                high = date_bounds(end, offset)[1] if isinstance(end, str) else DATE_MAX
            except ValueError:
                return
            out.append(DateRow(code, low, high))

        return build

    def _timing_builder(self) -> Builder:
        period = self._period_builder()
        offset = int(self._offset.total_seconds())

        def build(code: str, value: Any, out: Out) -> None:
            if not isinstance(value, dict):
                return
            found: list[DateRow] = []
            for event in value.get("event", ()):
                if isinstance(event, str):
                    try:
                        low, high, _ = date_bounds(event, offset)
                    except ValueError:
                        continue
                    found.append(DateRow(code, low, high))
            repeat = value.get("repeat")
            if isinstance(repeat, dict) and "boundsPeriod" in repeat:
                period(code, repeat["boundsPeriod"], found)
            if found:
                out.append(DateRow(code, min(r.low for r in found), max(r.high for r in found)))

        return build

    def _reference_builder(self) -> Builder:
        bases = self._bases

        def build(code: str, value: Any, out: Out) -> None:
            if not isinstance(value, dict):
                return
            ident = value.get("identifier")
            isys = ival = None
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                isys, ival = ident.get("system"), ident["value"]
            target = value.get("reference")
            if isinstance(target, str) and not target.startswith("#"):
                row = parse_reference(target, bases, code)
                if row is not None:
                    if ival is not None:
                        row = ReferenceRow(
                            code, row.target_type, row.target_id, row.version, row.url, isys, ival
                        )
                    out.append(row)
                    return
            if ival is not None:
                rtype = value.get("type")
                rtype = rtype if isinstance(rtype, str) else None
                out.append(ReferenceRow(code, rtype, None, None, None, isys, ival))

        return build

    def _sniffing_builder(self, ptype: ParamType) -> Builder:
        """For fallback results, whose FHIR type is not known statically."""

        def build(code: str, value: Any, out: Out) -> None:
            if isinstance(value, bool):
                out.append(TokenRow(code, None, "true" if value else "false"))
                return
            for ftype in _sniff(value):
                b = self._builder(ptype, ftype)
                if b is not None:
                    b(code, value, out)
                    return

        return build


def _sniff(value: Any) -> list[str]:
    if isinstance(value, str):
        return ["string", "code", "uri", "dateTime"]
    if isinstance(value, int | float):
        return ["decimal"]
    if isinstance(value, dict):
        if "coding" in value or "text" in value:
            return ["CodeableConcept"]
        if "reference" in value:
            return ["Reference"]
        if "start" in value or "end" in value:
            return ["Period"]
        if "value" in value and "system" in value:
            return ["Identifier"]
        if "code" in value:
            return ["Coding", "Quantity"]
    return []


def _fhirpathpy_compiler() -> Callable[[str], Evaluator] | None:
    try:
        import fhirpathpy
        from fhirpathpy.models import models
    except ImportError:  # pragma: no cover - fhirpathpy is an install requirement
        return None

    def compile_expression(expression: str) -> Evaluator:
        fn = fhirpathpy.compile(expression, model=models["r4"])

        def evaluate(resource: Mapping[str, Any]) -> list[Any]:
            return list(fn(resource, {}))

        return evaluate

    return compile_expression


# -- reference parsing -------------------------------------------------------------


def parse_reference(target: str, local_bases: Sequence[str], code: str = "") -> ReferenceRow | None:
    """A reference string as a row: local ``Type/id[/_history/v]``, or an absolute URL/urn."""
    for base in local_bases:
        if target.startswith(base):
            target = target[len(base) :]
            break
    if "://" in target or target.startswith("urn:"):
        return ReferenceRow(code, None, None, None, target)
    parts = target.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        rtype, rid, version = parts[0], parts[1], parts[3]
    elif len(parts) == 2:
        rtype, rid, version = parts[0], parts[1], None
    else:
        return None
    if not rtype[:1].isupper() or not rid or "?" in target:
        return None
    return ReferenceRow(code, rtype, rid, version, None)


def _canonical_reference(code: str, value: Any, out: Out) -> None:
    if isinstance(value, str) and value:
        url, _, version = value.partition("|")
        out.append(ReferenceRow(code, None, None, version or None, url))


# -- builders --------------------------------------------------------------------------


def _string(code: str, value: Any, out: Out) -> None:
    if isinstance(value, str) and value:
        out.append(StringRow(code, normalize(value), value))


def _strings(code: str, values: Iterable[Any], out: Out) -> None:
    for v in values:
        _string(code, v, out)


def _human_name(code: str, value: Any, out: Out) -> None:
    if not isinstance(value, dict):
        return
    family = value.get("family")
    given = [g for g in value.get("given", ()) if isinstance(g, str)]
    _string(code, value.get("text"), out)
    _string(code, family, out)
    _strings(code, given, out)
    _strings(code, value.get("prefix", ()), out)
    _strings(code, value.get("suffix", ()), out)
    if "text" not in value and isinstance(family, str) and given:
        # The whole name, as people type it: "张三" (family first, no space) or "John Smith".
        if is_cjk(family):
            _string(code, family + "".join(given), out)
        else:
            _string(code, " ".join([*given, family]), out)


def _address(code: str, value: Any, out: Out) -> None:
    if not isinstance(value, dict):
        return
    _string(code, value.get("text"), out)
    _strings(code, value.get("line", ()), out)
    for key in ("city", "district", "state", "postalCode", "country"):
        _string(code, value.get(key), out)


def _token_code(code: str, value: Any, out: Out) -> None:
    if isinstance(value, bool):
        out.append(TokenRow(code, None, "true" if value else "false"))
    elif isinstance(value, str) and value:
        out.append(TokenRow(code, None, value))


def _text(code: str, text: Any, out: Out) -> None:
    if isinstance(text, str) and text:
        out.append(TokenTextRow(code, normalize(text)))


def _coding(code: str, value: Any, out: Out) -> None:
    if not isinstance(value, dict):
        return
    c = value.get("code")
    if isinstance(c, str) and c:
        out.append(TokenRow(code, value.get("system"), c))
    _text(code, value.get("display"), out)


def _codeable_concept(code: str, value: Any, out: Out) -> None:
    if not isinstance(value, dict):
        return
    text = value.get("text")
    for coding in value.get("coding", ()):
        if coding.__class__ is dict:
            c = coding.get("code")
            if c.__class__ is str and c:
                out.append(TokenRow(code, coding.get("system"), c))
            display = coding.get("display")
            if display != text:
                _text(code, display, out)
    _text(code, text, out)


def _identifier(code: str, value: Any, out: Out) -> None:
    if not isinstance(value, dict):
        return
    v = value.get("value")
    if not isinstance(v, str) or not v:
        return
    out.append(TokenRow(code, value.get("system"), v))
    itype = value.get("type")
    if isinstance(itype, dict):
        for coding in itype.get("coding", ()):
            tc = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(tc, str) and tc:
                out.append(OfTypeRow(code, coding.get("system"), tc, v))
        _text(code, itype.get("text"), out)


def _contact_point(code: str, value: Any, out: Out) -> None:
    if isinstance(value, dict):
        v = value.get("value")
        if isinstance(v, str) and v:
            out.append(TokenRow(code, value.get("system"), v))


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return None
    if isinstance(value, Decimal):
        return value
    return None


def _number(code: str, value: Any, out: Out) -> None:
    d = _decimal(value)
    if d is not None and d.is_finite():
        out.append(NumberRow(code, d, d))


def _number_range(code: str, value: Any, out: Out) -> None:
    if isinstance(value, dict):
        low = _decimal((value.get("low") or {}).get("value"))
        high = _decimal((value.get("high") or {}).get("value"))
        if low is not None or high is not None:
            out.append(NumberRow(code, low, high))


def _quantity_row(
    code: str,
    low: Decimal | None,
    high: Decimal | None,
    system: Any,
    unit_code: Any,
    unit: Any,
) -> QuantityRow:
    system = system if isinstance(system, str) else None
    unit_code = unit_code if isinstance(unit_code, str) else None
    unit = unit if isinstance(unit, str) else None
    canon = ucum_canonical(unit_code) if system == UCUM and unit_code else None
    if canon is None:
        return QuantityRow(code, low, high, system, unit_code, unit)
    factor, ccode = canon
    return QuantityRow(
        code,
        low,
        high,
        system,
        unit_code,
        unit,
        ccode,
        None if low is None else low * factor,
        None if high is None else high * factor,
    )


def _quantity(code: str, value: Any, out: Out) -> None:
    if isinstance(value, dict):
        d = _decimal(value.get("value"))
        if d is not None and d.is_finite():
            out.append(
                _quantity_row(code, d, d, value.get("system"), value.get("code"), value.get("unit"))
            )


def _money(code: str, value: Any, out: Out) -> None:
    if isinstance(value, dict):
        d = _decimal(value.get("value"))
        if d is not None and d.is_finite():
            currency = value.get("currency")
            out.append(_quantity_row(code, d, d, "urn:iso:std:iso:4217", currency, currency))


def _quantity_range(code: str, value: Any, out: Out) -> None:
    if not isinstance(value, dict):
        return
    lo, hi = value.get("low") or {}, value.get("high") or {}
    low, high = _decimal(lo.get("value")), _decimal(hi.get("value"))
    if low is None and high is None:
        return
    unit_of = lo if low is not None else hi
    out.append(
        _quantity_row(
            code, low, high, unit_of.get("system"), unit_of.get("code"), unit_of.get("unit")
        )
    )


def _uri(code: str, value: Any, out: Out) -> None:
    if isinstance(value, str) and value:
        out.append(UriRow(code, value))


_PRIMITIVE_STRINGS = ("string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid")

_BUILDERS: dict[ParamType, dict[str, Builder]] = {
    ParamType.STRING: {
        **dict.fromkeys(_PRIMITIVE_STRINGS, _string),
        "HumanName": _human_name,
        "Address": _address,
    },
    ParamType.TOKEN: {
        **dict.fromkeys((*_PRIMITIVE_STRINGS, "boolean"), _token_code),
        "Coding": _coding,
        "CodeableConcept": _codeable_concept,
        "Identifier": _identifier,
        "ContactPoint": _contact_point,
    },
    ParamType.NUMBER: {
        **dict.fromkeys(("decimal", "integer", "positiveInt", "unsignedInt"), _number),
        "Range": _number_range,
    },
    ParamType.QUANTITY: {
        **dict.fromkeys(fhirpath.QUANTITY_TYPES, _quantity),
        "Money": _money,
        "Range": _quantity_range,
    },
    ParamType.URI: dict.fromkeys(("uri", "url", "canonical", "oid", "uuid", "string"), _uri),
}
