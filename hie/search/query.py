"""The typed search query: what :mod:`hie.search.params` produces and the planner consumes.

A query is an AND of clauses; each clause is an OR of values of one parameter, or a
chain (``subject:Patient.name=x``) or a reverse chain (``_has:Observation:patient:code=x``)
wrapping another clause. Values are already parsed and normalised: dates are ranges,
numbers Decimals with their precision, strings normalised.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from hie.search.dates import DateRange
from hie.search.definitions import SearchParamDef


class Prefix(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    SA = "sa"
    EB = "eb"
    AP = "ap"


class Modifier(enum.StrEnum):
    EXACT = "exact"
    CONTAINS = "contains"
    MISSING = "missing"
    NOT = "not"
    TEXT = "text"
    OF_TYPE = "of-type"
    IDENTIFIER = "identifier"
    BELOW = "below"
    ABOVE = "above"
    TYPE = "[type]"  # reference:Patient; the type is ParamClause.target_type


@dataclass(frozen=True, slots=True)
class StringValue:
    text: str  # as given (for :exact)
    norm: str  # normalised (default prefix match, :contains)


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``code`` / ``system|code`` / ``|code`` / ``system|``.

    ``match_system`` False: any system (plain ``code``). True: the row's system must be
    ``system``, where ``None`` means "no system" (``|code``). ``code`` None: any code.
    """

    system: str | None
    code: str | None
    match_system: bool


@dataclass(frozen=True, slots=True)
class TextValue:
    """``:text``: normalised text matched as a prefix of display/text."""

    norm: str


@dataclass(frozen=True, slots=True)
class OfTypeValue:
    """``identifier:of-type=type-system|type-code|value``."""

    type_system: str | None
    type_code: str
    value: str


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: Prefix
    range: DateRange
    text: str


@dataclass(frozen=True, slots=True)
class NumberValue:
    prefix: Prefix
    value: Decimal


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """``[prefix]number|system|code``; with no system, ``code`` matches code or unit."""

    prefix: Prefix
    value: Decimal
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A local ``Type/id`` (type None: any target type), or an absolute/canonical ``url``."""

    type: str | None
    id: str | None
    version: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    uri: str


@dataclass(frozen=True, slots=True)
class MissingValue:
    missing: bool


@dataclass(frozen=True, slots=True)
class CompositeValue:
    components: tuple[ComponentValue, ...]


ComponentValue = (
    StringValue | TokenValue | DateValue | NumberValue | QuantityValue | ReferenceValue | UriValue
)
Value = ComponentValue | TextValue | OfTypeValue | MissingValue | CompositeValue


@dataclass(frozen=True, slots=True)
class ParamClause:
    """One parameter occurrence: matches if any value matches (comma = OR)."""

    name: str  # as written, for messages
    param: SearchParamDef
    modifier: Modifier | None
    values: tuple[Value, ...]
    target_type: str | None = None  # reference:Type


@dataclass(frozen=True, slots=True)
class ChainClause:
    """``param[:Type].rest``: a reference whose target matches ``rest``.

    ``targets`` pairs each candidate target type with ``rest`` parsed for that type
    (``subject.organization.name`` means Patient.organization on a Patient and
    Device.owner on a Device); a target of any of them matches.
    """

    name: str
    param: SearchParamDef
    targets: tuple[tuple[str, Clause], ...]

    @property
    def target_types(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.targets)


@dataclass(frozen=True, slots=True)
class HasClause:
    """``_has:source_type:param:inner``: some ``source_type`` resource whose ``param``
    refers to this resource matches ``inner``."""

    name: str
    source_type: str
    param: SearchParamDef
    inner: Clause


Clause = ParamClause | ChainClause | HasClause


@dataclass(frozen=True, slots=True)
class Include:
    """``_include``/``_revinclude=source_type:param[:target_type]`` (param None: ``*``)."""

    source_type: str
    param: SearchParamDef | None
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass(frozen=True, slots=True)
class SortKey:
    param: SearchParamDef
    descending: bool


class Summary(enum.StrEnum):
    TRUE = "true"
    FALSE = "false"
    TEXT = "text"
    DATA = "data"
    COUNT = "count"


class Total(enum.StrEnum):
    NONE = "none"
    ESTIMATE = "estimate"
    ACCURATE = "accurate"


class IgnoredKind(enum.StrEnum):
    UNKNOWN = "unknown"  # not a parameter of this type
    UNSUPPORTED = "unsupported"  # defined by FHIR, not implemented here
    EMPTY = "empty"  # no value: ignored per the R4 search page


@dataclass(frozen=True, slots=True)
class Ignored:
    """A parameter left out of the search; reported as a warning (an error when strict)."""

    name: str
    kind: IgnoredKind
    reason: str


@dataclass(frozen=True, slots=True)
class SearchQuery:
    resource_type: str
    clauses: tuple[Clause, ...] = ()  # all must match (repeated parameter = AND)
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    summary: Summary | None = None
    elements: tuple[str, ...] = ()
    total: Total | None = None
    ignored: tuple[Ignored, ...] = ()


@dataclass(frozen=True, slots=True)
class EverythingQuery:
    """``Patient/[id]/$everything`` parameters."""

    since: DateRange | None = None  # only resources updated at or after since.low
    types: tuple[str, ...] = ()  # empty: every type in the compartment
    count: int | None = None
    ignored: tuple[Ignored, ...] = ()
