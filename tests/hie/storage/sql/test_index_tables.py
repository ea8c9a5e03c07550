"""The index tables: parameter keys, composite signatures and row grouping."""

from __future__ import annotations

from decimal import Decimal

from hie.fhir.types import SERVED_TYPES
from hie.search import Extractor, default_registry
from hie.search.definitions import ParamType
from hie.search.extract import Route
from hie.search.rows import CompositeRow, NumberRow, QuantityRow, ReferenceRow, TokenRow
from hie.storage.sql.index_tables import (
    COMPOSITE_SIGNATURES,
    composite_tables,
    group,
    number_table,
    param_key,
    token_table,
)

KINDS = {
    ParamType.TOKEN: "token",
    ParamType.STRING: "string",
    ParamType.DATE: "date",
    ParamType.NUMBER: "number",
    ParamType.QUANTITY: "quantity",
    ParamType.REFERENCE: "reference",
    ParamType.URI: "uri",
}


def test_parameter_keys_never_collide() -> None:
    registry = default_registry()
    keys: dict[int, tuple[str, str]] = {}
    for rtype in registry.resource_types:
        for code in registry.params(rtype):
            key = param_key(rtype, code)
            assert keys.setdefault(key, (rtype, code)) == (rtype, code)
            assert -(2**31) <= key < 2**31
    assert param_key("Observation", "code") != param_key("Condition", "code")


def test_every_indexed_composite_has_a_table() -> None:
    registry = default_registry()
    extractor = Extractor(registry, resource_types=sorted(SERVED_TYPES))
    for c in extractor.coverage():
        param = registry.param(c.resource_type, c.code)
        assert param is not None
        if param.type is ParamType.COMPOSITE and c.route is Route.COMPILED:
            signature = tuple(KINDS[comp.type] for comp in param.components)
            assert signature in COMPOSITE_SIGNATURES, (c.resource_type, c.code)


def test_rows_are_grouped_per_table_with_prefixed_components() -> None:
    token = TokenRow("code", "http://loinc.org", "8480-6")
    value = QuantityRow("value-quantity", Decimal(150), Decimal(150), None, "mm[Hg]", None)
    rows = [
        token,
        NumberRow("probability", Decimal("0.25"), None),
        CompositeRow("component-code-value-quantity", (token, value)),
        ReferenceRow("subject", "Patient", "p", None, None),
    ]
    grouped = group([(7, "Observation", rows)], sqlite=True)
    assert grouped[token_table] == [
        {
            "res_pk": 7,
            "param": param_key("Observation", "code"),
            "system": "http://loinc.org",
            "code": "8480-6",
        }
    ]
    assert grouped[number_table][0]["low"] == 0.25, "SQLite stores decimals as REAL"
    composite = grouped[composite_tables[("token", "quantity")]][0]
    assert composite["c0_code"] == "8480-6"
    assert composite["c1_code"] == "mm[Hg]"
    assert composite["c1_low"] == 150.0
    exact = group([(7, "Observation", rows)], sqlite=False)
    assert exact[number_table][0]["low"] == Decimal("0.25")
