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

from sqlalchemy import BigInteger, Column, Float, Index, Integer, Numeric, Table, Text
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


def _table(name: str, columns: list[Column[Any]], *indexes: Index) -> Table:
    return Table(
        name,
        Base.metadata,
        Column("res_pk", Key, nullable=False),
        Column("param", Integer, nullable=False),
        *columns,
        Index(f"ix_{name}_res_pk", "res_pk", "param"),
        *indexes,
    )


def _lookup(name: str, *columns: str) -> Index:
    """A lookup index whose entries also carry res_pk (index-only scans on PostgreSQL)."""
    return Index(f"ix_{name}_{'_'.join(columns)}", *columns, postgresql_include=["res_pk"])


string_table = _table(
    "idx_string", _columns(GROUPS["string"]), _lookup("idx_string", "param", "norm")
)
token_table = _table(
    "idx_token", _columns(GROUPS["token"]), _lookup("idx_token", "param", "code", "system")
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
)
number_table = _table(
    "idx_number", _columns(GROUPS["number"]), _lookup("idx_number", "param", "low")
)
quantity_table = _table(
    "idx_quantity",
    _columns(GROUPS["quantity"]),
    _lookup("idx_quantity", "param", "code", "low"),
    _lookup("idx_quantity", "param", "canonical_code", "canonical_low"),
)
reference_table = _table(
    "idx_reference",
    _columns(GROUPS["reference"]),
    _lookup("idx_reference", "target_id", "target_type", "param"),
    _lookup("idx_reference", "param", "url"),
    _lookup("idx_reference", "param", "identifier_value"),
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

Num_ = Callable[[Decimal | None], Any]


def _decimal(value: Decimal | None) -> Any:
    return value


def _float(value: Decimal | None) -> Any:
    return None if value is None else float(value)


def _values(row: ComponentRow | TokenTextRow | OfTypeRow, num: Num_) -> dict[str, Any]:
    cls = row.__class__
    if cls is TokenRow:
        assert isinstance(row, TokenRow)
        return {"system": row.system, "code": row.code}
    if cls is StringRow:
        assert isinstance(row, StringRow)
        return {"norm": row.norm, "exact": row.exact}
    if cls is DateRow:
        assert isinstance(row, DateRow)
        return {"low": row.low, "high": row.high}
    if cls is ReferenceRow:
        assert isinstance(row, ReferenceRow)
        return {
            "target_type": row.target_type,
            "target_id": row.target_id,
            "version": row.version,
            "url": row.url,
            "identifier_system": row.identifier_system,
            "identifier_value": row.identifier_value,
        }
    if cls is QuantityRow:
        assert isinstance(row, QuantityRow)
        return {
            "low": num(row.low),
            "high": num(row.high),
            "system": row.system,
            "code": row.code,
            "unit": row.unit,
            "canonical_code": row.canonical_code,
            "canonical_low": num(row.canonical_low),
            "canonical_high": num(row.canonical_high),
        }
    if cls is NumberRow:
        assert isinstance(row, NumberRow)
        return {"low": num(row.low), "high": num(row.high)}
    if cls is UriRow:
        assert isinstance(row, UriRow)
        return {"uri": row.uri}
    if cls is TokenTextRow:
        assert isinstance(row, TokenTextRow)
        return {"text": row.text}
    assert isinstance(row, OfTypeRow)
    return {"type_system": row.type_system, "type_code": row.type_code, "value": row.value}


_KIND = {
    TokenRow: "token",
    StringRow: "string",
    DateRow: "date",
    NumberRow: "number",
    QuantityRow: "quantity",
    ReferenceRow: "reference",
    UriRow: "uri",
}


def group(
    written: Iterable[tuple[int, str, Sequence[IndexRow]]], *, sqlite: bool
) -> dict[Table, list[dict[str, Any]]]:
    """Insert parameters per table for ``(res_pk, resource type, rows)`` triples."""
    num = _float if sqlite else _decimal
    out: dict[Table, list[dict[str, Any]]] = {}
    for res_pk, rtype, rows in written:
        for row in rows:
            key = param_key(rtype, row.param)
            if row.__class__ is CompositeRow:
                assert isinstance(row, CompositeRow)
                signature = tuple(_KIND[c.__class__] for c in row.components)
                table = composite_tables.get(signature)
                if table is None:
                    continue
                values: dict[str, Any] = {"res_pk": res_pk, "param": key}
                for i, component in enumerate(row.components):
                    prefix = component_prefix(i)
                    for name, value in _values(component, num).items():
                        values[prefix + name] = value
            else:
                table = SIMPLE_TABLES[row.__class__]
                values = _values(row, num)  # type: ignore[arg-type]
                values["res_pk"] = res_pk
                values["param"] = key
            out.setdefault(table, []).append(values)
    return out
