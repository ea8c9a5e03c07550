"""The search-index tables: one per row class of :mod:`hie.search.rows`.

Every table has ``res_pk`` (the resource table's key) and ``param``, a 32-bit key for
(resource type, parameter code) from :func:`param_key`: a hash, so no dictionary table
and no lookups, and each type's parameters have their own keys (``Observation.code``
and ``Condition.code`` never share index entries). Rows exist only for current, live
versions: a write replaces them and a deletion removes them.

Text that is compared or ordered uses the ``C`` collation on PostgreSQL, so ordering
and prefix ranges are by code point, as on SQLite and in Python. Decimals are
``NUMERIC`` on PostgreSQL and ``REAL`` on SQLite (which has no decimal type).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import BigInteger, Column, Float, Index, Integer, Numeric, Table, Text, text
from sqlalchemy.types import TypeEngine

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
from hie.storage.sql.models import Base, Key

CText: TypeEngine[str] = Text().with_variant(Text(collation="C"), "postgresql")
Num: TypeEngine[Any] = Numeric(asdecimal=True).with_variant(Float(), "sqlite")
Micros = BigInteger
LONG_SPAN = 86_400_000_000  # a day in microseconds; the planner's _DAY


@lru_cache(maxsize=8192)
def param_key(resource_type: str, code: str) -> int:
    """The stable 32-bit key of a search parameter of a resource type."""
    digest = hashlib.blake2b(f"{resource_type}.{code}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


# Column groups per value kind; composites repeat them per component with a prefix.
GROUPS: Mapping[str, tuple[tuple[str, TypeEngine[Any]], ...]] = {
    "string": (("norm", CText), ("exact", CText)),
    "token": (("system", Text()), ("code", CText)),
    "date": (("low", Micros()), ("high", Micros())),
    "number": (("low", Num), ("high", Num)),
    "quantity": (
        ("low", Num),
        ("high", Num),
        ("system", Text()),
        ("code", Text()),
        ("unit", Text()),
        ("canonical_code", Text()),
        ("canonical_low", Num),
        ("canonical_high", Num),
    ),
    "reference": (
        ("target_type", Text()),
        ("target_id", CText),
        ("version", Text()),
        ("url", CText),
        ("identifier_system", Text()),
        ("identifier_value", CText),
    ),
    "uri": (("uri", CText),),
}


def _columns(groups: Iterable[tuple[str, TypeEngine[Any]]], prefix: str = "") -> list[Column[Any]]:
    return [Column(prefix + name, kind) for name, kind in groups]


def _table(
    name: str, columns: list[Column[Any]], *indexes: Index, probe: tuple[str, ...] = ()
) -> Table:
    """An index table; (res_pk, param, *probe) serves replacing a resource's rows, sort
    keys, and checking one resource's values when another condition drives the query."""
    return Table(
        name,
        Base.metadata,
        Column("res_pk", Key, nullable=False),
        Column("param", Integer, nullable=False),
        *columns,
        Index(f"ix_{name}_res_pk", "res_pk", "param", *probe),
        *indexes,
    )


def _lookup(name: str, *columns: str, present: str | None = None) -> Index:
    """A lookup index whose entries also carry res_pk (index-only scans on PostgreSQL).

    ``present``: a column that is often NULL; only rows that have it are indexed.
    """
    where: dict[str, Any] = {}
    if present is not None:
        where = {
            "postgresql_where": text(f"{present} IS NOT NULL"),
            "sqlite_where": text(f"{present} IS NOT NULL"),
        }
    return Index(f"ix_{name}_{'_'.join(columns)}", *columns, postgresql_include=["res_pk"], **where)


string_table = _table(
    "idx_string", _columns(GROUPS["string"]), _lookup("idx_string", "param", "norm")
)
token_table = _table(
    "idx_token",
    _columns(GROUPS["token"]),
    _lookup("idx_token", "param", "code", "system"),
    probe=("code",),
)
token_text_table = _table(
    "idx_token_text", [Column("text", CText)], _lookup("idx_token_text", "param", "text")
)
of_type_table = _table(
    "idx_of_type",
    [Column("type_system", Text), Column("type_code", Text), Column("value", CText)],
    _lookup("idx_of_type", "param", "value"),
)
date_table = _table(
    "idx_date",
    _columns(GROUPS["date"]),
    _lookup("idx_date", "param", "low", "high"),
    _lookup("idx_date", "param", "high"),
    # Rows spanning a day or more (months, years, long or open periods): a range on
    # ``low`` cannot bound them, so date searches read them from this small index.
    Index(
        "ix_idx_date_long",
        "param",
        "low",
        postgresql_include=["res_pk", "high"],
        postgresql_where=text(f"high - low >= {LONG_SPAN}"),
        sqlite_where=text(f"high - low >= {LONG_SPAN}"),
    ),
)
number_table = _table(
    "idx_number", _columns(GROUPS["number"]), _lookup("idx_number", "param", "low")
)
quantity_table = _table(
    "idx_quantity",
    _columns(GROUPS["quantity"]),
    _lookup("idx_quantity", "param", "code", "low"),
    _lookup("idx_quantity", "param", "canonical_code", "canonical_low", present="canonical_code"),
)
reference_table = _table(
    "idx_reference",
    _columns(GROUPS["reference"]),
    _lookup("idx_reference", "target_id", "target_type", "param", present="target_id"),
    _lookup("idx_reference", "param", "url", present="url"),
    _lookup("idx_reference", "param", "identifier_value", present="identifier_value"),
)
uri_table = _table("idx_uri", _columns(GROUPS["uri"]), _lookup("idx_uri", "param", "uri"))

# The component kinds of every indexed composite parameter of the R4 types.
COMPOSITE_SIGNATURES = (
    ("token", "token"),
    ("token", "quantity"),
    ("token", "date"),
    ("token", "string"),
    ("reference", "token"),
    ("token", "number", "number"),
)
_FIRST_KEY = {"token": "code", "reference": "target_id"}


def component_prefix(index: int) -> str:
    return f"c{index}_"


def _composite_table(signature: tuple[str, ...]) -> Table:
    name = "idx_composite_" + "_".join(signature)
    columns = [col for i, kind in enumerate(signature) for col in _columns(GROUPS[kind], f"c{i}_")]
    return _table(name, columns, _lookup(name, "param", "c0_" + _FIRST_KEY[signature[0]]))


composite_tables: dict[tuple[str, ...], Table] = {
    sig: _composite_table(sig) for sig in COMPOSITE_SIGNATURES
}

SIMPLE_TABLES: dict[type, Table] = {
    StringRow: string_table,
    TokenRow: token_table,
    TokenTextRow: token_text_table,
    OfTypeRow: of_type_table,
    DateRow: date_table,
    NumberRow: number_table,
    QuantityRow: quantity_table,
    ReferenceRow: reference_table,
    UriRow: uri_table,
}
ALL_TABLES: tuple[Table, ...] = (*SIMPLE_TABLES.values(), *composite_tables.values())

# -- rows -> column values -------------------------------------------------------------
#
# Rows become plain tuples in table column order: the store hands them straight to the
# driver (executemany on SQLite, COPY on PostgreSQL), which is several times faster than
# dicts through SQLAlchemy's insert machinery for the ~15 rows each resource has.

Num_ = Callable[[Decimal | None], Any]
Values = tuple[Any, ...]


def _decimal(value: Decimal | None) -> Any:
    return value


def _float(value: Decimal | None) -> Any:
    return None if value is None else float(value)


def _component(row: ComponentRow | TokenTextRow | OfTypeRow, num: Num_) -> Values:
    """The row's own columns (without res_pk and param)."""
    cls = row.__class__
    if cls is TokenRow:
        assert isinstance(row, TokenRow)
        return (row.system, row.code)
    if cls is ReferenceRow:
        assert isinstance(row, ReferenceRow)
        return (
            row.target_type,
            row.target_id,
            row.version,
            row.url,
            row.identifier_system,
            row.identifier_value,
        )
    if cls is StringRow:
        assert isinstance(row, StringRow)
        return (row.norm, row.exact)
    if cls is DateRow:
        assert isinstance(row, DateRow)
        return (row.low, row.high)
    if cls is TokenTextRow:
        assert isinstance(row, TokenTextRow)
        return (row.text,)
    if cls is QuantityRow:
        assert isinstance(row, QuantityRow)
        return (
            num(row.low),
            num(row.high),
            row.system,
            row.code,
            row.unit,
            row.canonical_code,
            num(row.canonical_low),
            num(row.canonical_high),
        )
    if cls is NumberRow:
        assert isinstance(row, NumberRow)
        return (num(row.low), num(row.high))
    if cls is UriRow:
        assert isinstance(row, UriRow)
        return (row.uri,)
    assert isinstance(row, OfTypeRow)
    return (row.type_system, row.type_code, row.value)


_KIND = {
    TokenRow: "token",
    StringRow: "string",
    DateRow: "date",
    NumberRow: "number",
    QuantityRow: "quantity",
    ReferenceRow: "reference",
    UriRow: "uri",
}


def columns(table: Table) -> list[str]:
    """Column names in the order of the tuples :func:`group` builds."""
    return [c.name for c in table.columns]


def group(
    written: Iterable[tuple[int, str, Sequence[IndexRow]]], *, sqlite: bool
) -> dict[Table, list[Values]]:
    """Column tuples per table for ``(res_pk, resource type, rows)`` triples."""
    num = _float if sqlite else _decimal
    out: dict[Table, list[Values]] = {}
    for res_pk, rtype, rows in written:
        for row in rows:
            key = param_key(rtype, row.param)
            if row.__class__ is CompositeRow:
                assert isinstance(row, CompositeRow)
                signature = tuple(_KIND[c.__class__] for c in row.components)
                table = composite_tables.get(signature)
                if table is None:
                    continue
                values: Values = (res_pk, key)
                for component in row.components:
                    values += _component(component, num)
            else:
                table = SIMPLE_TABLES[row.__class__]
                values = (res_pk, key, *_component(row, num))  # type: ignore[arg-type]
            found = out.get(table)
            if found is None:
                out[table] = [values]
            else:
                found.append(values)
    return out
