"""Index rows: what one resource contributes to each search index table.

Each row class maps 1:1 to a table of the SQL store (phase 2): the store adds the
owning resource's key (type, id) and writes the fields as columns. ``param`` is the
search parameter code. Rows are immutable and hashable, so duplicates collapse.

=====================  =====================================================
row                    table, main index
=====================  =====================================================
:class:`StringRow`     ``idx_string``   (param, norm) for prefix LIKE 'x%'
:class:`TokenRow`      ``idx_token``    (param, code, system)
:class:`TokenTextRow`  ``idx_token_text`` (param, text) for ``:text``
:class:`OfTypeRow`     ``idx_identifier_type`` (param, value, type_code)
:class:`DateRow`       ``idx_date``     (param, low, high)
:class:`NumberRow`     ``idx_number``   (param, low, high)
:class:`QuantityRow`   ``idx_quantity`` (param, code, low) / (param, canonical_code, ...)
:class:`ReferenceRow`  ``idx_reference`` (param, target_id, target_type), (param, url)
:class:`UriRow`        ``idx_uri``      (param, uri)
:class:`CompositeRow`  ``idx_composite_<signature>``, one column group per component
=====================  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class StringRow:
    param: str
    norm: str  # normalised (text.normalize): for the default prefix match and :contains
    exact: str  # as written: for :exact


@dataclass(frozen=True, slots=True)
class TokenRow:
    param: str
    system: str | None
    code: str  # Coding.code, Identifier.value, ContactPoint.value, "true"/"false", a code


@dataclass(frozen=True, slots=True)
class TokenTextRow:
    """Text for ``:text``: CodeableConcept.text, Coding.display or Identifier.type.text."""

    param: str
    text: str  # normalised


@dataclass(frozen=True, slots=True)
class OfTypeRow:
    """An Identifier with a type, for ``identifier:of-type=type-system|type-code|value``."""

    param: str
    type_system: str | None
    type_code: str
    value: str


@dataclass(frozen=True, slots=True)
class DateRow:
    param: str
    low: int  # epoch microseconds, UTC, inclusive (dates.DATE_MIN for an open start)
    high: int  # inclusive (dates.DATE_MAX for an open end)


@dataclass(frozen=True, slots=True)
class NumberRow:
    param: str
    low: Decimal | None  # a point value v is low == high == v; None is an open Range end
    high: Decimal | None


@dataclass(frozen=True, slots=True)
class QuantityRow:
    param: str
    low: Decimal | None
    high: Decimal | None
    system: str | None
    code: str | None
    unit: str | None
    # The same value in a canonical UCUM unit (numbers.ucum_canonical), when simple.
    canonical_code: str | None = None
    canonical_low: Decimal | None = None
    canonical_high: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ReferenceRow:
    param: str
    target_type: str | None  # for a local reference "Type/id" (or one under a local base)
    target_id: str | None
    version: str | None
    url: str | None  # absolute URL, urn or canonical (without |version) when not local
    identifier_system: str | None = None  # Reference.identifier, for :identifier
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class UriRow:
    param: str
    uri: str


ComponentRow = TokenRow | StringRow | DateRow | NumberRow | QuantityRow | ReferenceRow | UriRow


@dataclass(frozen=True, slots=True)
class CompositeRow:
    """Component values taken from one element (an Observation, or one of its components)."""

    param: str
    components: tuple[ComponentRow, ...]

    @property
    def signature(self) -> str:
        """The component row kinds, e.g. ``"token,quantity"``: one table per signature."""
        return ",".join(_KIND[type(c)] for c in self.components)


_KIND: dict[type, str] = {
    TokenRow: "token",
    StringRow: "string",
    DateRow: "date",
    NumberRow: "number",
    QuantityRow: "quantity",
    ReferenceRow: "reference",
    UriRow: "uri",
}

IndexRow = (
    StringRow
    | TokenRow
    | TokenTextRow
    | OfTypeRow
    | DateRow
    | NumberRow
    | QuantityRow
    | ReferenceRow
    | UriRow
    | CompositeRow
)
