"""The SQL planner: a typed search query (:mod:`hie.search.query`) -> SQL over the index.

Every clause becomes a set condition on the resource row ``r``:
``r.pk IN (SELECT res_pk FROM idx_x WHERE param = :key AND <value conditions>)``.
Values of one parameter are OR-ed inside the sub-select, clauses are AND-ed. ``:not``
and ``:missing=true`` use ``NOT IN``. Chains join ``idx_reference`` to the target
resource and apply the rest of the chain to it; ``_has`` goes the other way. The
sub-selects are not correlated, so both PostgreSQL and SQLite may drive the query
from whichever index is most selective.

Range comparisons come from :mod:`hie.search.predicates` (the same rules the tests
use), rendered here as SQL. Pages use keyset conditions over the sort keys and the
storage key, never OFFSET. Visibility (the consent seam) is a WHERE condition on every
resource the query touches: matches, chain targets, ``_has`` sources and includes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    Table,
    and_,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    union,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import KeyedColumnElement
from sqlalchemy.sql.expression import FromClause

from hie.search.dates import date_predicate, from_datetime
from hie.search.definitions import ParamType, SearchParamDef
from hie.search.numbers import UCUM, number_predicate, ucum_canonical
from hie.search.predicates import Compare, Predicate
from hie.search.query import (
    ChainClause,
    Clause,
    ComponentValue,
    CompositeValue,
    DateValue,
    HasClause,
    Include,
    MissingValue,
    Modifier,
    NumberValue,
    OfTypeValue,
    ParamClause,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
)
from hie.search.rows import TokenRow, UriRow
from hie.storage.ports import (
    Compartment,
    Criteria,
    Cursor,
    EverythingRequest,
    NewVersion,
    PatientRegion,
    SearchPage,
    SearchRequest,
    SortValue,
    StoredResource,
    Visibility,
)
from hie.storage.sql.index_tables import (
    LONG_SPAN,
    component_prefix,
    composite_tables,
    date_table,
    number_table,
    of_type_table,
    param_key,
    quantity_table,
    reference_table,
    string_table,
    token_table,
    token_text_table,
    uri_table,
)
from hie.storage.sql.models import ResourceRow

R = cast(Table, ResourceRow.__table__)
# The consent filter's aliases, made once (an alias's columns cost ~0.3 ms to set up).
# Each appears only in its own EXISTS, never around itself, so sharing cannot correlate.
_MEMBER_REF = reference_table.alias("c_member")
_SHAPE_REF = reference_table.alias("c_shape_ref")
_SHAPE_TOKEN = token_table.alias("c_shape")
_CONSENT_TOKEN = token_table.alias("c_token")
_CONSENT_DATE = date_table.alias("c_date")
_CONSENT_DATA_REF = reference_table.alias("c_data_ref")
_DERIVED_REF = reference_table.alias("c_derived")
_LINK_REF = reference_table.alias("c_link")
_LINKED = R.alias("c_linked")
_HELD = R.alias("c_held")
Cols = Callable[[str], KeyedColumnElement[Any]]
_TOP = "\U0010ffff"  # above every character: "p" <= x < "p" + _TOP is "x starts with p"
_MAX_INCLUDE_ROUNDS = 8
_WALK_ROWS = 4000  # a date window walked row by row (Planner._sorted_by_row) at most
_MAX_LINKS = 10  # chains and _has nest at most 8 links (hie.search.params)
_KINDS = {
    ParamType.TOKEN: "token",
    ParamType.STRING: "string",
    ParamType.DATE: "date",
    ParamType.NUMBER: "number",
    ParamType.QUANTITY: "quantity",
    ParamType.REFERENCE: "reference",
    ParamType.URI: "uri",
}
_RESOURCE_COLUMNS = ("pk", "type", "id", "version", "last_updated_us", "deleted", "content")


def _cols(table: Any, prefix: str = "") -> Cols:
    def col(name: str) -> KeyedColumnElement[Any]:
        return cast(KeyedColumnElement[Any], table.c[prefix + name])

    return col


def _starts_with(column: KeyedColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    if not prefix:
        return column.is_not(None)
    return and_(column >= prefix, column < prefix + _TOP)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _uri_prefixes(uri: str) -> list[str]:
    """``uri`` and every prefix of it that ends at a path boundary (for ``:above``)."""
    out = {uri}
    for i, ch in enumerate(uri):
        if ch == "/" and i > 0:
            out.add(uri[:i])
            out.add(uri[: i + 1])
    return sorted(out)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stored(row: Any, offset: int = 1) -> StoredResource:
    """A StoredResource from a row of (pk, type, id, version, last_updated_us, deleted,
    content, custodian, ...)."""
    return StoredResource(
        type=row[offset],
        id=row[offset + 1],
        version=row[offset + 2],
        last_updated=_EPOCH + timedelta(microseconds=row[offset + 3]),
        deleted=row[offset + 4],
        content=row[offset + 5],
        custodian=row[offset + 6],
    )


_Key = tuple[ColumnElement[Any], bool, SortValue, bool]  # expr, descending, value, nullable


@dataclass(frozen=True, slots=True)
class _SortSpec:
    expr: ColumnElement[Any]
    descending: bool


class Planner:
    """Builds and runs search SQL for one dialect; immutable, share freely."""

    def __init__(self, *, sqlite: bool) -> None:
        self._sqlite = sqlite
        mark = "?" if sqlite else "%s"
        # Conditional writes ask "which X has identifier s|v?" once per resource: through
        # the statement builder that costs ~2 ms, as one prepared probe ~0.1 ms.
        self._probe_sql = (
            "SELECT r.pk, r.type, r.id, r.version, r.last_updated_us, r.deleted, r.content,"
            " r.custodian FROM idx_token t JOIN resource r ON r.pk = t.res_pk"
            f" WHERE t.param = {mark} AND t.code = {mark} AND t.system = {mark}"
            f" AND r.type = {mark} AND r.deleted = {mark}"
            f" GROUP BY r.pk ORDER BY r.pk LIMIT {mark}"
        )
        # The same for one exact uri (``Provenance?_source=<message>`` per HL7 message).
        self._uri_probe_sql = (
            "SELECT r.pk, r.type, r.id, r.version, r.last_updated_us, r.deleted, r.content,"
            " r.custodian FROM idx_uri u JOIN resource r ON r.pk = u.res_pk"
            f" WHERE u.param = {mark} AND u.uri = {mark}"
            f" AND r.type = {mark} AND r.deleted = {mark}"
            f" GROUP BY r.pk ORDER BY r.pk LIMIT {mark}"
        )
        self._aliases: dict[tuple[str, int], tuple[FromClause, FromClause]] = {
            (kind, depth): (
                reference_table.alias(f"{kind}_ref{depth}"),
                R.alias(f"{kind}_res{depth}"),
            )
            for kind in ("chain", "has")
            for depth in range(_MAX_LINKS)
        }
        # The resource row of a search, an include and a revinclude.
        self._r, self._t, self._s = R.alias("r"), R.alias("t"), R.alias("s")
        for ref, res in [*self._aliases.values(), (self._r, self._t), (self._s, self._s)]:
            _ = ref.c, res.c  # set the columns up now, not in the first request

    def _links(self, depth: int, kind: str) -> tuple[FromClause, FromClause]:
        """The (reference rows, resource) aliases of a chain or ``_has`` link at ``depth``.

        Made once per depth: setting up an alias's columns costs ~0.3 ms, and a chain
        over Observation.subject has four target types. Sibling sub-selects may share
        an alias (each is its own scope); nested ones may not, hence one per depth.
        """
        made = self._aliases.get((kind, depth))
        if made is not None:
            return made
        return reference_table.alias(), R.alias()

    # -- values ------------------------------------------------------------------------

    def _num(self, value: int | Decimal) -> Any:
        if self._sqlite and isinstance(value, Decimal):
            return float(value)
        return value

    def _compare(self, col: KeyedColumnElement[Any], c: Compare, nullable: bool) -> Any:
        value = self._num(c.value)
        if c.op == "<":
            cond = col < value
        elif c.op == "<=":
            cond = col <= value
        elif c.op == ">":
            cond = col > value
        else:
            cond = col >= value
        if not nullable:
            return cond
        # A NULL low is below everything, a NULL high above everything (open ranges).
        if (c.column == "low") == (c.op in ("<", "<=")):
            return or_(col.is_(None), cond)
        return cond

    def _predicate(
        self,
        pred: Predicate,
        low: KeyedColumnElement[Any],
        high: KeyedColumnElement[Any],
        *,
        nullable: bool,
    ) -> ColumnElement[bool]:
        return or_(
            *(
                and_(
                    *(self._compare(low if c.column == "low" else high, c, nullable) for c in conj)
                )
                for conj in pred.clauses
            )
        )

    def _token(self, cols: Cols, v: TokenValue) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if v.code is not None:
            parts.append(cols("code") == v.code)
        if v.match_system:
            parts.append(
                cols("system").is_(None) if v.system is None else cols("system") == v.system
            )
        return and_(*parts) if parts else true()

    def _identifier(self, cols: Cols, v: TokenValue) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if v.code is not None:
            parts.append(cols("identifier_value") == v.code)
        else:
            parts.append(cols("identifier_value").is_not(None))
        if v.match_system:
            col = cols("identifier_system")
            parts.append(col.is_(None) if v.system is None else col == v.system)
        return and_(*parts)

    def _quantity(self, cols: Cols, v: QuantityValue) -> ColumnElement[bool]:
        pred = number_predicate(v.prefix, v.value)
        canon = ucum_canonical(v.code) if v.system == UCUM and v.code else None
        if canon is not None:
            factor, code = canon
            scaled = Predicate(
                tuple(
                    tuple(replace(c, value=c.value * factor) for c in conj) for conj in pred.clauses
                )
            )
            return and_(
                cols("canonical_code") == code,
                self._predicate(
                    scaled, cols("canonical_low"), cols("canonical_high"), nullable=True
                ),
            )
        parts: list[ColumnElement[bool]] = []
        if v.system is not None:
            parts.append(cols("system") == v.system)
            parts.append(cols("code") == v.code)
        elif v.code is not None:
            parts.append(or_(cols("code") == v.code, cols("unit") == v.code))
        parts.append(self._predicate(pred, cols("low"), cols("high"), nullable=True))
        return and_(*parts)

    def _reference(
        self, cols: Cols, v: ReferenceValue, target_type: str | None
    ) -> ColumnElement[bool]:
        if v.url is not None:
            cond = cols("url") == v.url
            return and_(cond, cols("version") == v.version) if v.version else cond
        parts = [cols("target_id") == v.id]
        rtype = v.type or target_type
        if rtype is not None:
            parts.append(cols("target_type") == rtype)
        if v.version is not None:
            parts.append(cols("version") == v.version)
        return and_(*parts)

    def _component(self, cols: Cols, v: ComponentValue, now_us: int) -> ColumnElement[bool]:
        if isinstance(v, TokenValue):
            return self._token(cols, v)
        if isinstance(v, StringValue):
            return _starts_with(cols("norm"), v.norm)
        if isinstance(v, DateValue):
            pred = date_predicate(v.prefix, v.range, now_us)
            return self._predicate(pred, cols("low"), cols("high"), nullable=False)
        if isinstance(v, NumberValue):
            pred = number_predicate(v.prefix, v.value)
            return self._predicate(pred, cols("low"), cols("high"), nullable=True)
        if isinstance(v, QuantityValue):
            return self._quantity(cols, v)
        if isinstance(v, ReferenceValue):
            return self._reference(cols, v, None)
        assert isinstance(v, UriValue)
        return cols("uri") == v.uri

    # -- clauses -------------------------------------------------------------------

    def conditions(
        self, r: FromClause, clauses: Sequence[Clause], rtype: str, ctx: _Context
    ) -> list[ColumnElement[bool]]:
        """The AND of ``clauses``; date clauses on one single-valued parameter merge.

        ``date=ge2024-01-01&date=lt2024-02-01`` on Observation.date (``effective[x]``, one
        value per resource) asks one row for both bounds, which gives the index a range
        with two ends; asked apart, each bound alone would select half the table.
        """
        out: list[ColumnElement[bool]] = []
        merged: dict[str, list[ParamClause]] = {}
        for clause in clauses:
            if _merges(clause):
                assert isinstance(clause, ParamClause)
                merged.setdefault(clause.param.code, []).append(clause)
            else:
                out.append(self.condition(r, clause, rtype, ctx))
        for group in merged.values():
            p = group[0].param
            preds = [self._date_values(c, ctx.now_us) for c in group]
            rows = self._date_rows(param_key(p.resource_type, p.code), preds)
            out.append(r.c.pk.in_(rows))
        return out

    def _date_values(self, c: ParamClause, now_us: int) -> Predicate:
        """The OR of a date clause's values, as one predicate."""
        conj: list[tuple[Compare, ...]] = []
        for v in c.values:
            assert isinstance(v, DateValue)
            conj += date_predicate(v.prefix, v.range, now_us).clauses
        return Predicate(tuple(conj))

    def _date_rows(self, key: int, preds: Sequence[Predicate]) -> CompoundSelect[Any]:
        """res_pk of the date rows of ``key`` that satisfy every predicate.

        Most rows span less than a day (an instant, a dateTime, a short Period); for them
        a bound on ``high`` is a bound on ``low`` too, so every predicate becomes a range
        on (param, low). Longer spans (months, open-ended periods) are few and have a
        partial index of their own.
        """
        t = date_table
        exact = [self._predicate(p, t.c.low, t.c.high, nullable=False) for p in preds]
        span = t.c.high - t.c.low
        short = [t.c.param == key, span < literal_column(str(_DAY)), *exact]
        low, high = _low_bounds(preds)
        if low is not None:
            short.append(t.c.low >= low)
        if high is not None:
            short.append(t.c.low <= high)
        long = [t.c.param == key, span >= literal_column(str(_DAY)), *exact]
        return union_all(select(t.c.res_pk).where(*short), select(t.c.res_pk).where(*long))

    def _sort_rows(
        self, key: int, preds: Sequence[Predicate]
    ) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
        """Where the one row of a single-valued date parameter that satisfies the date
        clauses on it lies: (short rows by a range on ``low``, long rows)."""
        t = date_table
        exact = [self._predicate(p, t.c.low, t.c.high, nullable=False) for p in preds]
        span = t.c.high - t.c.low
        day: ColumnElement[int] = literal_column(str(_DAY))
        low, high = _low_bounds(preds)
        short = [t.c.param == key, span < day, *exact]
        if low is not None:
            short.append(t.c.low >= low)
        if high is not None:
            short.append(t.c.low <= high)
        return short, [t.c.param == key, span >= day, *exact]

    def condition(
        self, r: FromClause, clause: Clause, rtype: str, ctx: _Context
    ) -> ColumnElement[bool]:
        """The condition that resource row ``r`` (of type ``rtype``) matches ``clause``."""
        if isinstance(clause, ChainClause):
            return self._chain(r, clause, ctx)
        if isinstance(clause, HasClause):
            return self._has(r, clause, rtype, ctx)
        return self._param(r, clause, ctx)

    def _param(self, r: FromClause, c: ParamClause, ctx: _Context) -> ColumnElement[bool]:
        p = c.param
        if p.column is not None:
            return self._column_param(r, c, ctx)
        key = param_key(p.resource_type, p.code)
        if c.modifier is Modifier.MISSING:
            assert isinstance(c.values[0], MissingValue)
            if c.values[0].missing:
                return and_(*(_absent(r, t, key) for t in _tables_of(p)))
            tables = [self._rows(t, key) for t in _tables_of(p)]
            return r.c.pk.in_(tables[0] if len(tables) == 1 else union_all(*tables))
        if p.type is ParamType.DATE:
            return r.c.pk.in_(self._date_rows(key, [self._date_values(c, ctx.now_us)]))
        table, cond = self._values(p, c, ctx.now_us)
        if c.modifier is Modifier.NOT:
            return _absent(r, table, key, cond)
        return r.c.pk.in_(self._rows(table, key).where(cond))

    @staticmethod
    def _rows(table: Table, key: int) -> Select[Any]:
        return select(table.c.res_pk).where(table.c.param == key)

    def _values(
        self, p: SearchParamDef, c: ParamClause, now_us: int
    ) -> tuple[Table, ColumnElement[bool]]:
        mod = c.modifier
        values = c.values
        if p.type is ParamType.TOKEN:
            if mod is Modifier.TEXT:
                col = token_text_table.c.text
                conds = []
                for v in values:
                    assert isinstance(v, TextValue)
                    conds.append(_starts_with(col, v.norm))
                    conds.append(col.like("% " + _like_escape(v.norm) + "%", escape="\\"))
                return token_text_table, or_(*conds)
            if mod is Modifier.OF_TYPE:
                t = of_type_table
                conds = []
                for v in values:
                    assert isinstance(v, OfTypeValue)
                    parts = [t.c.type_code == v.type_code, t.c.value == v.value]
                    if v.type_system is not None:
                        parts.append(t.c.type_system == v.type_system)
                    conds.append(and_(*parts))
                return t, or_(*conds)
            cols = _cols(token_table)
            return token_table, or_(*(self._token(cols, cast(TokenValue, v)) for v in values))
        if p.type is ParamType.STRING:
            t = string_table
            conds = []
            for v in values:
                assert isinstance(v, StringValue)
                if mod is Modifier.EXACT:
                    conds.append(t.c.exact == v.text)
                elif mod is Modifier.CONTAINS:
                    conds.append(t.c.norm.like("%" + _like_escape(v.norm) + "%", escape="\\"))
                else:
                    conds.append(_starts_with(t.c.norm, v.norm))
            return t, or_(*conds)
        if p.type is ParamType.REFERENCE:
            cols = _cols(reference_table)
            if mod is Modifier.IDENTIFIER:
                conds = [self._identifier(cols, cast(TokenValue, v)) for v in values]
            else:
                conds = [
                    self._reference(cols, cast(ReferenceValue, v), c.target_type) for v in values
                ]
                if c.target_type is not None:
                    conds = [and_(reference_table.c.target_type == c.target_type, or_(*conds))]
            return reference_table, or_(*conds)
        if p.type is ParamType.URI:
            t = uri_table
            conds = []
            for v in values:
                assert isinstance(v, UriValue)
                if mod is Modifier.BELOW:
                    conds.append(_starts_with(t.c.uri, v.uri))
                elif mod is Modifier.ABOVE:
                    conds.append(t.c.uri.in_(_uri_prefixes(v.uri)))
                else:
                    conds.append(t.c.uri == v.uri)
            return t, or_(*conds)
        if p.type is ParamType.COMPOSITE:
            signature = tuple(_KINDS[comp.type] for comp in p.components)
            table = composite_tables[signature]
            conds = []
            for v in values:
                assert isinstance(v, CompositeValue)
                conds.append(
                    and_(
                        *(
                            self._component(_cols(table, component_prefix(i)), cv, now_us)
                            for i, cv in enumerate(v.components)
                        )
                    )
                )
            return table, or_(*conds)
        table = {
            ParamType.DATE: date_table,
            ParamType.NUMBER: number_table,
            ParamType.QUANTITY: quantity_table,
        }[p.type]
        cols = _cols(table)
        return table, or_(*(self._component(cols, cast(ComponentValue, v), now_us) for v in values))

    def _column_param(self, r: FromClause, c: ParamClause, ctx: _Context) -> ColumnElement[bool]:
        p = c.param
        if c.modifier is Modifier.MISSING:
            assert isinstance(c.values[0], MissingValue)
            return false() if c.values[0].missing else true()
        if p.column == "id":
            ids = [cast(TokenValue, v).code for v in c.values]
            if c.modifier is Modifier.NOT:
                return r.c.id.not_in(ids)
            return r.c.id.in_(ids)
        col = r.c.last_updated_us
        preds = []
        for v in c.values:
            assert isinstance(v, DateValue)
            pred = date_predicate(v.prefix, v.range, ctx.now_us)
            preds.append(self._predicate(pred, col, col, nullable=False))
        return or_(*preds)

    def _chain(self, r: FromClause, c: ChainClause, ctx: _Context) -> ColumnElement[bool]:
        key = param_key(c.param.resource_type, c.param.code)
        conds = []
        ref, t = self._links(ctx.depth, "chain")
        for ttype, inner in c.targets:
            sub = (
                select(ref.c.res_pk)
                .select_from(
                    ref.join(t, and_(t.c.type == ref.c.target_type, t.c.id == ref.c.target_id))
                )
                .where(
                    ref.c.param == key,
                    ref.c.target_type == ttype,
                    ref.c.target_id.is_not(None),  # the partial index's condition
                    t.c.deleted.is_(False),
                    self.visible(t, [ttype], ctx.visibility),
                    self.condition(t, inner, ttype, ctx.deeper()),
                )
            )
            conds.append(sub)
        # One IN over a UNION, not an OR of INs: the database can then drive the query
        # from the chain's own (usually selective) index instead of scanning the type.
        if len(conds) == 1:
            return r.c.pk.in_(conds[0])
        return r.c.pk.in_(union_all(*conds))

    def _has(self, r: FromClause, c: HasClause, rtype: str, ctx: _Context) -> ColumnElement[bool]:
        ref, s = self._links(ctx.depth, "has")
        sub = (
            select(ref.c.target_id)
            .select_from(ref.join(s, s.c.pk == ref.c.res_pk))
            .where(
                ref.c.param == param_key(c.source_type, c.param.code),
                ref.c.target_type == rtype,
                ref.c.target_id.is_not(None),
                s.c.deleted.is_(False),
                self.visible(s, [c.source_type], ctx.visibility),
                self.condition(s, c.inner, c.source_type, ctx.deeper()),
            )
        )
        return r.c.id.in_(sub)

    # -- visibility and compartments -------------------------------------------------

    def visible(
        self, r: FromClause, types: Iterable[str] | None, visibility: Visibility
    ) -> ColumnElement[bool]:
        """The consent seam: hidden custodians and security labels, as SQL."""
        if visibility.everything:
            return true()
        conds: list[ColumnElement[bool]] = []
        if visibility.hidden_custodians:
            hidden = sorted(visibility.hidden_custodians)
            conds.append(or_(r.c.custodian.is_(None), r.c.custodian.not_in(hidden)))
        if visibility.hidden_labels:
            t = token_table.alias()
            labels = or_(
                *(
                    and_(t.c.system == system, t.c.code == code)
                    for system, code in sorted(visibility.hidden_labels)
                )
            )
            labelled = select(t.c.res_pk).where(t.c.res_pk == r.c.pk, labels)
            if types is not None:
                labelled = labelled.where(t.c.param.in_([param_key(x, "_security") for x in types]))
            conds.append(~labelled.exists())
        if visibility.restricted:
            conds.append(self._consented(r, types, visibility))
        return and_(*conds)

    def _consented(
        self, r: FromClause, types: Iterable[str] | None, v: Visibility
    ) -> ColumnElement[bool]:
        """Consent as SQL: the exact mirror of ``hie.consent.rules.Regions.covers``."""
        restricted = sorted(v.patient_data if types is None else set(types) & v.patient_data)
        if not restricted:
            return true()
        conds: list[ColumnElement[bool]] = [r.c.type.not_in(restricted)]
        if v.own:
            own = sorted(v.own)
            conds.append(r.c.custodian.in_(own))
            # A record the exchange derived (no custodian: the enterprise Patient) is
            # seen by whoever holds a Patient record in its compartment.
            keys = [param_key(t, code) for t in restricted for code in v.compartment.get(t, ())]
            ref, held = _DERIVED_REF, _HELD
            source = select(held.c.pk).where(
                held.c.type == "Patient",
                held.c.id == ref.c.target_id,
                held.c.custodian.in_(own),
                held.c.deleted.is_(False),
            )
            derived = select(ref.c.res_pk).where(
                ref.c.res_pk == r.c.pk,
                ref.c.param.in_(keys),
                ref.c.target_type == "Patient",
                source.exists(),
            )
            conds.append(and_(r.c.custodian.is_(None), derived.exists()))
        permits = [self._in_region(r, restricted, g, v, permit=True) for g in v.permits]
        if permits:
            denies = [self._in_region(r, restricted, g, v, permit=False) for g in v.denies]
            conds.append(and_(or_(*permits), *(~d for d in denies)))
        return or_(*conds)

    def _in_region(
        self, r: FromClause, types: list[str], g: PatientRegion, v: Visibility, *, permit: bool
    ) -> ColumnElement[bool]:
        keys = [param_key(t, code) for t in types for code in v.compartment.get(t, ())]
        ref = _MEMBER_REF

        def direct(col: Any) -> ColumnElement[bool]:
            return or_(
                col.in_(sorted(g.patients)) if g.patients else false(),
                self._has_shape(col, g.shapes, v.shape_param) if g.shapes else false(),
            )

        def patient(col: Any) -> ColumnElement[bool]:
            # Consents and grants on an enterprise Patient cover the source Patients it
            # links (hie.exchange.mpi writes Patient.link from the enterprise record).
            lk, e = _LINK_REF, _LINKED
            linked = (
                select(lk.c.res_pk)
                .join(e, e.c.pk == lk.c.res_pk)
                .where(
                    lk.c.target_id == col,
                    lk.c.target_type == "Patient",
                    lk.c.param == param_key("Patient", "link"),
                    e.c.type == "Patient",
                    e.c.deleted.is_(False),
                    direct(e.c.id),
                )
            )
            return or_(direct(col), linked.exists())

        # Correlated (EXISTS): the cost follows the candidates, not every consented record.
        members = (
            select(ref.c.res_pk)
            .where(
                ref.c.res_pk == r.c.pk,
                ref.c.param.in_(keys),
                ref.c.target_type == "Patient",
                ref.c.target_id.is_not(None),
                patient(ref.c.target_id),
            )
            .exists()
        )
        member = or_(members, and_(r.c.type == "Patient", patient(r.c.id)))
        region = g.region
        dates = v.clinical_dates
        conds = [member, *(self._criteria(r, types, c, dates) for c in region.criteria)]
        conds += [~self._criteria(r, types, e, dates) for e in region.exceptions]
        if permit:
            labels = v.sensitive_labels - region.names
            codes = v.sensitive_codes - region.names
            if labels:
                conds.append(~self._tokens(r, types, "_security", labels))
            if codes:
                conds.append(~self._tokens(r, types, "code", codes))
        return and_(*conds)

    def _has_shape(self, patient: Any, shapes: frozenset[str], param: str) -> ColumnElement[bool]:
        """``patient`` has a current Consent of one of these shapes (hie.consent.shapes)."""
        t, ref = _SHAPE_TOKEN, _SHAPE_REF
        return (
            select(ref.c.res_pk)
            .join(t, t.c.res_pk == ref.c.res_pk)
            .where(
                ref.c.target_id == patient,
                ref.c.target_type == "Patient",
                ref.c.param == param_key("Consent", "patient"),
                t.c.param == param_key("Consent", param),
                t.c.code.in_(sorted(shapes)),
            )
            .exists()
        )

    def _criteria(
        self, r: FromClause, types: list[str], c: Criteria, dates: Mapping[str, str]
    ) -> ColumnElement[bool]:
        conds: list[ColumnElement[bool]] = []
        if c.types is not None:
            conds.append(r.c.type.in_(sorted(c.types)))
        if c.labels is not None:
            conds.append(self._tokens(r, types, "_security", c.labels))
        if c.codes is not None:
            conds.append(self._tokens(r, types, "code", c.codes))
        if c.data_period is not None:
            start, end = c.data_period
            d = _CONSENT_DATE
            keys = [param_key(x, dates[x]) for x in types if x in dates]
            dated = select(d.c.res_pk).where(
                d.c.res_pk == r.c.pk, d.c.param.in_(keys), d.c.low >= start, d.c.high <= end
            )
            if c.undated:
                any_date = select(d.c.res_pk).where(d.c.res_pk == r.c.pk, d.c.param.in_(keys))
                conds.append(or_(dated.exists(), ~any_date.exists()))
            else:
                conds.append(dated.exists())
        if c.custodians is not None:
            held = r.c.custodian.in_(sorted(c.custodians)) if c.custodians else false()
            conds.append(or_(held, r.c.custodian.is_(None)) if c.undated else held)
        if c.data is not None:
            conds.append(self._data(r, c.data))
        return and_(true(), *conds)

    def _data(self, r: FromClause, data: frozenset[tuple[str, str, str]]) -> ColumnElement[bool]:
        """The resource is one of ``data``'s instances or refers to one of its dependents'."""
        ref = _CONSENT_DATA_REF
        parts: list[ColumnElement[bool]] = []
        for rtype, rid, meaning in sorted(data):
            parts.append(and_(r.c.type == rtype, r.c.id == rid))
            if meaning == "dependents":
                refers = select(ref.c.res_pk).where(
                    ref.c.res_pk == r.c.pk, ref.c.target_type == rtype, ref.c.target_id == rid
                )
                parts.append(refers.exists())
        return or_(false(), *parts)

    def _tokens(
        self, r: FromClause, types: list[str], code: str, codings: frozenset[tuple[str, str]]
    ) -> ColumnElement[bool]:
        """The resource has a ``code`` token row holding one of ``codings``."""
        if not codings:
            return false()
        t = _CONSENT_TOKEN
        by_system: dict[str, list[str]] = {}
        for system, c in sorted(codings):
            by_system.setdefault(system, []).append(c)
        match = or_(*(and_(t.c.system == s, t.c.code.in_(cs)) for s, cs in by_system.items()))
        keys = [param_key(x, code) for x in types]
        return select(t.c.res_pk).where(t.c.res_pk == r.c.pk, t.c.param.in_(keys), match).exists()

    def in_compartment(
        self, r: FromClause, rtype: str, compartment: Compartment
    ) -> ColumnElement[bool]:
        ids = sorted(compartment.patient_ids)
        codes = compartment.params.get(rtype, ())
        parts: list[Select[Any]] = []
        if codes:
            ref = reference_table
            keys = [param_key(rtype, code) for code in codes]
            parts.append(
                select(ref.c.res_pk).where(
                    ref.c.target_id.in_(ids),
                    ref.c.target_id.is_not(None),
                    ref.c.target_type == "Patient",
                    ref.c.param.in_(keys),
                )
            )
        if rtype == "Patient":
            parts.append(select(R.c.pk).where(R.c.type == "Patient", R.c.id.in_(ids)))
        if not parts:
            return false()
        return r.c.pk.in_(parts[0] if len(parts) == 1 else union_all(*parts))

    # -- sorting and keysets -------------------------------------------------------

    def sort_expr(self, r: FromClause, key: SortKey) -> ColumnElement[Any]:
        p = key.param
        if p.column == "id":
            return cast(ColumnElement[Any], r.c.id)
        if p.column == "last_updated":
            return cast(ColumnElement[Any], r.c.last_updated_us)
        pkey = param_key(p.resource_type, p.code)
        agg = func.max if key.descending else func.min
        if p.type is ParamType.DATE:
            t, col = date_table, date_table.c.high if key.descending else date_table.c.low
        elif p.type in (ParamType.NUMBER, ParamType.QUANTITY):
            t = number_table if p.type is ParamType.NUMBER else quantity_table
            col = t.c.high if key.descending else t.c.low
        elif p.type is ParamType.STRING:
            t, col = string_table, string_table.c.norm
        elif p.type is ParamType.TOKEN:
            t, col = token_table, token_table.c.code
        elif p.type is ParamType.REFERENCE:
            t = reference_table
            col = cast(Any, func.coalesce(t.c.target_id, t.c.url))
        else:
            t, col = uri_table, uri_table.c.uri
        return select(agg(col)).where(t.c.res_pk == r.c.pk, t.c.param == pkey).scalar_subquery()

    @staticmethod
    def _after(keys: Sequence[_Key], i: int) -> ColumnElement[bool]:
        """Rows strictly after the cursor in the order (NULL sort values last)."""
        if i == len(keys):
            return false()
        expr, desc, value, nullable = keys[i]
        rest = Planner._after(keys, i + 1)
        if value is None:
            return and_(expr.is_(None), rest)
        beyond = expr < value if desc else expr > value
        if not nullable:
            return or_(beyond, and_(expr == value, rest))
        return or_(expr.is_(None), beyond, and_(expr == value, rest))

    @staticmethod
    def _before(keys: Sequence[_Key], i: int) -> ColumnElement[bool]:
        """Rows strictly before the cursor in the order."""
        if i == len(keys):
            return false()
        expr, desc, value, nullable = keys[i]
        rest = Planner._before(keys, i + 1)
        if value is None:
            return or_(expr.is_not(None), and_(expr.is_(None), rest))
        ahead = expr > value if desc else expr < value
        if not nullable:
            return or_(ahead, and_(expr == value, rest))
        return and_(expr.is_not(None), or_(ahead, and_(expr == value, rest)))

    def _sort_value(self, value: Any) -> SortValue:
        if isinstance(value, float):
            return Decimal(repr(value))
        return cast(SortValue, value)

    def _cursor_value(self, value: SortValue) -> Any:
        if self._sqlite and isinstance(value, Decimal):
            return float(value)
        return value

    # -- running ---------------------------------------------------------------------

    def search_beside(
        self,
        conn: Connection,
        request: SearchRequest,
        pending: Callable[[str, TokenRow | UriRow], Sequence[NewVersion]],
    ) -> SearchPage | None:
        """A probe-able search answered from the database plus ``pending``, creates not yet
        inserted, so a conditional write need not flush the ones before it; None when the
        request is not a probe or the answer would not fit one page (flush and search).
        ``pending(type, row)`` gives the pending creates of that type with that row."""
        probe = self._token_probe(request)
        query = request.query
        if probe is None or query.includes or query.revincludes:
            return None
        clause = query.clauses[0]
        assert isinstance(clause, ParamClause)
        rtype = query.resource_type
        if clause.param.resource_type != rtype:
            return None
        value = clause.values[0]
        code = clause.param.code
        wanted: TokenRow | UriRow
        if isinstance(value, UriValue):
            wanted = UriRow(code, value.uri)
        else:
            assert isinstance(value, TokenValue)
            assert value.code is not None
            wanted = TokenRow(code, value.system, value.code)
        fresh = [
            StoredResource(n.type, n.id, n.version, n.last_updated, False, n.content, n.custodian)
            for n in pending(rtype, wanted)
        ]
        page = self._probe(conn, request, probe)
        if page.next is not None or len(page.items) + len(fresh) > request.count:
            return None
        # The pending rows get larger keys than any stored one: pk order is kept.
        items = page.items + fresh
        return SearchPage(items, [], len(items), None, None)

    def _token_probe(self, request: SearchRequest) -> tuple[str, tuple[Any, ...]] | None:
        """The probe statement and its leading arguments when the request is one plain
        ``system|code`` token clause or one exact uri, with nothing else to weigh (no
        sort, cursor, compartment, filter, total)."""
        query = request.query
        if (
            len(query.clauses) != 1
            or query.sort
            or request.cursor is not None
            or request.compartment is not None
            or request.total
            or request.count <= 0
            or not request.visibility.everything
        ):
            return None
        clause = query.clauses[0]
        if (
            not isinstance(clause, ParamClause)
            or clause.modifier is not None
            or clause.param.column is not None
            or len(clause.values) != 1
        ):
            return None
        value = clause.values[0]
        key = param_key(clause.param.resource_type, clause.param.code)
        if clause.param.type is ParamType.URI and isinstance(value, UriValue):
            return self._uri_probe_sql, (key, value.uri)
        if (
            clause.param.type is not ParamType.TOKEN
            or not isinstance(value, TokenValue)
            or not value.match_system
            or value.system is None
            or value.code is None
        ):
            return None
        return self._probe_sql, (key, value.code, value.system)

    def _probe(
        self, conn: Connection, request: SearchRequest, probe: tuple[str, tuple[Any, ...]]
    ) -> SearchPage:
        sql, args = probe
        query = request.query
        rows = conn.exec_driver_sql(
            sql, (*args, query.resource_type, False, request.count + 1)
        ).all()
        more = len(rows) > request.count
        rows = rows[: request.count]
        items = [
            StoredResource(
                type=row[1],
                id=row[2],
                version=row[3],
                last_updated=_EPOCH + timedelta(microseconds=row[4]),
                deleted=bool(row[5]),
                content=bytes(row[6]),
                custodian=row[7],
            )
            for row in rows
        ]
        next_cursor = Cursor((), int(rows[-1][0]), before=False) if more else None
        included = self.includes(
            conn, query, [(int(row[0]), s) for row, s in zip(rows, items, strict=True)], request
        )
        return SearchPage(items, included, None if more else len(items), next_cursor, None)

    def search(self, conn: Connection, request: SearchRequest) -> SearchPage:
        probe = self._token_probe(request)
        if probe is not None:
            return self._probe(conn, request, probe)
        query = request.query
        rtype = query.resource_type
        now = request.now or datetime.now(UTC)
        ctx = _Context(from_datetime(now), request.visibility)
        r = self._r
        where: list[ColumnElement[bool]] = [
            r.c.type == rtype,
            r.c.deleted.is_(False),
            self.visible(r, [rtype], request.visibility),
        ]
        if request.compartment is not None:
            where.append(self.in_compartment(r, rtype, request.compartment))
        base = list(where)
        where += self.conditions(r, query.clauses, rtype, ctx)
        if request.count <= 0:
            total = None
            if request.total:
                total = self._count(conn, select(r.c.pk).where(*where), estimate=request.estimate)
            return SearchPage(items=[], total=total)
        specs = [_SortSpec(self.sort_expr(r, k), k.descending) for k in query.sort]
        source = self._sort_source(query.sort[0]) if query.sort else None
        own = self._sort_clauses(query)
        if source is not None and own and not (request.cursor and request.cursor.before):
            # The date clauses on the sort parameter select the very row that sorts.
            rest = [c for c in query.clauses if not any(c is o for o in own)]
            preds = [self._date_values(c, ctx.now_us) for c in own]
            rows, more, before = self._sorted_by_index(
                conn,
                r,
                [*base, *self.conditions(r, rest, rtype, ctx)],
                specs,
                source,
                request.cursor,
                request.count,
                preds,
            )
        elif source is not None and not (request.cursor and request.cursor.before):
            rows, more, before = self._sorted_by_index(
                conn, r, where, specs, source, request.cursor, request.count
            )
        else:
            labels = [s.expr.label(f"k{i}") for i, s in enumerate(specs)]
            columns = (r.c[name] for name in _RESOURCE_COLUMNS)
            inner = select(*columns, r.c.custodian, *labels).where(*where)
            rows, more, before = self._page(conn, inner, specs, request.cursor, request.count)
        total = None
        if request.cursor is None and not more:
            total = len(rows)  # the whole result is on this page
        elif request.total:
            total = self._count(conn, select(r.c.pk).where(*where), estimate=request.estimate)
        items = [stored(row) for row in rows]
        nkeys = len(specs)

        def cursor_of(row: Any, *, back: bool) -> Cursor:
            values = tuple(self._sort_value(row[8 + i]) for i in range(nkeys))
            return Cursor(values, int(row[0]), before=back)

        next_cursor = prev_cursor = None
        if rows:
            if before:
                prev_cursor = cursor_of(rows[0], back=True) if more else None
                next_cursor = cursor_of(rows[-1], back=False)
            else:
                next_cursor = cursor_of(rows[-1], back=False) if more else None
                prev_cursor = cursor_of(rows[0], back=True) if request.cursor else None
        included = self.includes(
            conn, query, [(int(row[0]), s) for row, s in zip(rows, items, strict=True)], request
        )
        return SearchPage(items, included, total, next_cursor, prev_cursor)

    @staticmethod
    def _sort_clauses(query: SearchQuery) -> list[ParamClause]:
        """The date clauses on the first sort key's parameter, when it is single-valued:
        every match has that one row, and it holds the sort value."""
        if not query.sort:
            return []
        p = query.sort[0].param
        if p.type is not ParamType.DATE or not p.single or p.column is not None:
            return []
        return [
            c
            for c in query.clauses
            if _merges(c) and isinstance(c, ParamClause) and c.param.code == p.code
        ]

    def _sort_source(self, key: SortKey) -> tuple[Table, str, int] | None:
        """The index column that orders by ``key`` (never NULL there), if there is one."""
        p = key.param
        if p.column is not None:
            return None
        column = {
            ParamType.DATE: "high" if key.descending else "low",
            ParamType.STRING: "norm",
            ParamType.TOKEN: "code",
            ParamType.URI: "uri",
        }.get(p.type)
        if column is None:
            return None
        table = {
            ParamType.DATE: date_table,
            ParamType.STRING: string_table,
            ParamType.TOKEN: token_table,
            ParamType.URI: uri_table,
        }[p.type]
        return table, column, param_key(p.resource_type, p.code)

    def _sorted_by_index(
        self,
        conn: Connection,
        r: FromClause,
        where: Sequence[ColumnElement[bool]],
        specs: Sequence[_SortSpec],
        source: tuple[Table, str, int],
        cursor: Cursor | None,
        count: int,
        preds: Sequence[Predicate] = (),
    ) -> tuple[list[Any], bool, bool]:
        """A forward page whose first sort key is an indexed column.

        Each resource joins the one row that holds its sort value (the MIN or MAX the
        generic sort expression computes), so the first key is a plain index column: the
        database can walk that index in order and stop after a page (``-date``, ``_count``),
        or collect a small match set and sort it, whichever its statistics favour.
        Resources without a value come after all others, from a second query.

        ``preds``: the date clauses on a single-valued sort parameter, applied to the
        sorting row itself (:meth:`_sort_row`); every match has that row, so there is
        neither a MIN/MAX to check nor a second query.
        """
        table, column, key = source
        if preds:
            return self._sorted_by_row(conn, r, where, specs, key, column, cursor, count, preds)
        s = table.alias("s")
        s2 = table.alias("s2")
        agg = func.max if specs[0].descending else func.min
        defining = (
            select(agg(s2.c[column]))
            .where(s2.c.res_pk == r.c.pk, s2.c.param == key)
            .scalar_subquery()
        )
        columns = [*(r.c[name] for name in _RESOURCE_COLUMNS), r.c.custodian]
        rest = [spec.expr.label(f"k{i}") for i, spec in enumerate(specs) if i > 0]
        rows: list[Any] = []
        more = False
        if cursor is None or cursor.values[0] is not None:
            valued = (
                select(*columns, s.c[column].label("k0"), *rest)
                .select_from(r.join(s, and_(s.c.res_pk == r.c.pk, s.c.param == key)))
                .where(*where, s.c[column].is_not(None), s.c[column] == defining)
            )
            found, more, _ = self._page(conn, valued, specs, cursor, count, first_nullable=False)
            seen: set[int] = set()
            for row in found:  # two rows holding the same extreme value: keep one
                if row[0] not in seen:
                    seen.add(row[0])
                    rows.append(row)
            cursor = None
        if not more:
            missing = select(*columns, null().label("k0"), *rest).where(
                *where, _absent(r, table, key, table.c[column].is_not(None))
            )
            extra, more, _ = self._page(conn, missing, specs, cursor, count - len(rows))
            rows += extra
        return rows, more, False

    def _sorted_by_row(
        self,
        conn: Connection,
        r: FromClause,
        where: Sequence[ColumnElement[bool]],
        specs: Sequence[_SortSpec],
        key: int,
        column: str,
        cursor: Cursor | None,
        count: int,
        preds: Sequence[Predicate],
    ) -> tuple[list[Any], bool, bool]:
        """A page sorted by a single-valued date parameter with date clauses on it.

        On PostgreSQL, when the clauses leave a small window (a month holds ~1,700 dated
        Observations in a million resources), the window's rows are sorted and walked
        in order, each checked against the other conditions on its own, until the page
        is full: ``code=...&date=<a month>&_sort=-date&_count=20`` reads a few hundred
        rows. Left to itself the planner collected every resource of the code (25,000)
        or fetched every resource of the month to test it. Wider windows, and SQLite
        (whose planner nests loops anyway), join the rows and let the planner choose.
        """
        if cursor is not None and cursor.values[0] is None:
            return [], False, False  # past the valued rows: there are no others
        t = date_table
        short, long = self._sort_rows(key, preds)
        if not self._sqlite and self._window(conn, short, long) <= _WALK_ROWS:
            walk = union_all(
                select(t.c.res_pk, t.c[column]).where(*short),
                select(t.c.res_pk, t.c[column]).where(*long),
            )
            order = t.c[column].desc() if specs[0].descending else t.c[column].asc()
            s = walk.order_by(order, t.c.res_pk).subquery("s")
            rest = [spec.expr.label(f"k{i}") for i, spec in enumerate(specs) if i > 0]
            # OFFSET 0 keeps the check per row: the database may not merge it into a join.
            each = (
                select(*(r.c[n] for n in _RESOURCE_COLUMNS[1:]), r.c.custodian, *rest)
                .where(r.c.pk == s.c.res_pk, *where)
                .offset(0)
                .lateral("e")
            )
            valued = select(
                s.c.res_pk.label("pk"),
                *(each.c[n] for n in _RESOURCE_COLUMNS[1:]),
                each.c.custodian,
                s.c[column].label("k0"),
                *(each.c[f"k{i}"] for i in range(1, len(specs))),
            ).select_from(s.join(each, true()))
            return self._page(conn, valued, specs, cursor, count, first_nullable=False)
        s = union_all(
            select(t.c.res_pk, t.c[column]).where(*short),
            select(t.c.res_pk, t.c[column]).where(*long),
        ).subquery("s")
        columns = [*(r.c[name] for name in _RESOURCE_COLUMNS), r.c.custodian]
        rest = [spec.expr.label(f"k{i}") for i, spec in enumerate(specs) if i > 0]
        valued = (
            select(*columns, s.c[column].label("k0"), *rest)
            .select_from(r.join(s, s.c.res_pk == r.c.pk))
            .where(*where)
        )
        return self._page(conn, valued, specs, cursor, count, first_nullable=False)

    @staticmethod
    def _window(
        conn: Connection, short: Sequence[ColumnElement[bool]], long: Sequence[ColumnElement[bool]]
    ) -> int:
        """How many date rows the window holds, counted up to just over ``_WALK_ROWS``."""
        t = date_table

        def bounded(conds: Sequence[ColumnElement[bool]]) -> Any:
            rows = select(t.c.res_pk).where(*conds).limit(_WALK_ROWS + 1).subquery()
            return select(func.count()).select_from(rows).scalar_subquery()

        return int(conn.execute(select(bounded(short) + bounded(long))).scalar_one())

    def _page(
        self,
        conn: Connection,
        inner: Select[Any],
        specs: Sequence[_SortSpec],
        cursor: Cursor | None,
        count: int,
        *,
        first_nullable: bool = True,
    ) -> tuple[list[Any], bool, bool]:
        """One page of ``inner``'s rows in sort order (or in reverse, for ``before``).

        ``first_nullable`` False: the first sort key is never NULL here, so the order
        and the keyset need no NULL handling and can follow an index as they are.
        """
        m = inner.subquery("m")
        exprs = [m.c[f"k{i}"] for i in range(len(specs))]
        nullable = [first_nullable or i > 0 for i in range(len(specs))]
        page = select(m)
        before = cursor is not None and cursor.before
        if cursor is not None:
            if len(cursor.values) != len(specs):
                raise ValueError("the cursor does not fit this query's sort")
            keys: list[_Key] = [
                (e, s.descending, self._cursor_value(v), n)
                for e, s, v, n in zip(exprs, specs, cursor.values, nullable, strict=True)
            ]
            keys.append((m.c.pk, False, cursor.key, False))
            page = page.where(self._before(keys, 0) if before else self._after(keys, 0))
        order: list[Any] = []
        for e, s, n in zip(exprs, specs, nullable, strict=True):
            forward = e.desc() if s.descending else e.asc()
            backward = e.asc() if s.descending else e.desc()
            if n:
                order.append(backward.nulls_first() if before else forward.nulls_last())
            else:
                order.append(backward if before else forward)
        order.append(m.c.pk.desc() if before else m.c.pk.asc())
        rows = list(conn.execute(page.order_by(*order).limit(count + 1)).all())
        more = len(rows) > count
        rows = rows[:count]
        if before:
            rows.reverse()
        return rows, more, before

    def _count(self, conn: Connection, query: Select[Any], *, estimate: bool) -> int:
        if estimate and not self._sqlite:
            compiled = query.compile(conn, compile_kwargs={"literal_binds": False})
            plan = conn.exec_driver_sql(
                "EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params
            ).scalar_one()
            if isinstance(plan, str):
                import json

                plan = json.loads(plan)
            return int(plan[0]["Plan"]["Plan Rows"])
        counted = select(func.count()).select_from(query.subquery())
        return int(conn.execute(counted).scalar_one())

    # -- includes ---------------------------------------------------------------------

    def includes(
        self,
        conn: Connection,
        query: SearchQuery,
        matches: Sequence[tuple[int, StoredResource]],
        request: SearchRequest,
    ) -> list[StoredResource]:
        if not (query.includes or query.revincludes) or not matches:
            return []
        seen = {pk for pk, _ in matches}
        out: list[StoredResource] = []
        frontier = list(matches)
        for round_ in range(_MAX_INCLUDE_ROUNDS):
            wanted = [i for i in (*query.includes, *query.revincludes) if round_ == 0 or i.iterate]
            if not wanted or not frontier:
                break
            found: list[tuple[int, StoredResource]] = []
            for inc in wanted:
                rows = (
                    self._revinclude(conn, inc, frontier, request.visibility)
                    if inc.reverse
                    else self._include(conn, inc, frontier, request.visibility)
                )
                for pk, res in rows:
                    if pk not in seen:
                        seen.add(pk)
                        found.append((pk, res))
            out.extend(s for _, s in found)
            if len(out) >= request.max_includes:
                return out[: request.max_includes]
            frontier = found
        return out

    def _include(
        self,
        conn: Connection,
        inc: Include,
        sources: Sequence[tuple[int, StoredResource]],
        visibility: Visibility,
    ) -> list[tuple[int, StoredResource]]:
        pks = [pk for pk, s in sources if s.type == inc.source_type]
        if not pks:
            return []
        ref = reference_table
        t = self._t
        where = [ref.c.res_pk.in_(pks), t.c.deleted.is_(False), self.visible(t, None, visibility)]
        if inc.param is not None:
            where.append(ref.c.param == param_key(inc.source_type, inc.param.code))
        if inc.target_type is not None:
            where.append(ref.c.target_type == inc.target_type)
        query = (
            select(t.c.pk, *(t.c[n] for n in _RESOURCE_COLUMNS[1:]), t.c.custodian)
            .select_from(
                ref.join(t, and_(t.c.type == ref.c.target_type, t.c.id == ref.c.target_id))
            )
            .where(*where)
            .distinct()
            .order_by(t.c.pk)
        )
        return [(int(row[0]), stored(row)) for row in conn.execute(query)]

    def _revinclude(
        self,
        conn: Connection,
        inc: Include,
        targets: Sequence[tuple[int, StoredResource]],
        visibility: Visibility,
    ) -> list[tuple[int, StoredResource]]:
        by_type: dict[str, list[str]] = {}
        for _, target in targets:
            fits = inc.param is None or target.type in inc.param.targets
            if fits and (inc.target_type is None or target.type == inc.target_type):
                by_type.setdefault(target.type, []).append(target.id)
        if not by_type:
            return []
        ref = reference_table
        s = self._s
        where = [
            or_(
                *(
                    and_(ref.c.target_type == rtype, ref.c.target_id.in_(ids))
                    for rtype, ids in by_type.items()
                )
            ),
            ref.c.target_id.is_not(None),
            s.c.deleted.is_(False),
            self.visible(s, None, visibility),
        ]
        if inc.param is not None:
            where.append(ref.c.param == param_key(inc.source_type, inc.param.code))
            where.append(s.c.type == inc.source_type)
        query = (
            select(s.c.pk, *(s.c[n] for n in _RESOURCE_COLUMNS[1:]), s.c.custodian)
            .select_from(ref.join(s, s.c.pk == ref.c.res_pk))
            .where(*where)
            .distinct()
            .order_by(s.c.pk)
        )
        return [(int(row[0]), stored(row)) for row in conn.execute(query)]

    # -- $everything ------------------------------------------------------------------

    def everything(self, conn: Connection, request: EverythingRequest) -> SearchPage:
        comp = request.compartment
        ids = sorted(comp.patient_ids)
        ref = reference_table
        keys = [param_key(t, code) for t, codes in comp.params.items() for code in codes]
        # In steps, with the keys in hand between them: a compartment is small, and the
        # database plans each step well once it sees the actual keys (a single statement
        # leaves it guessing the size of the member set and scanning the resource table).
        members = select(ref.c.res_pk).where(
            ref.c.target_id.in_(ids),
            ref.c.target_id.is_not(None),
            ref.c.target_type == "Patient",
            ref.c.param.in_(keys),
        )
        patients = select(R.c.pk).where(R.c.type == "Patient", R.c.id.in_(ids))
        found = {int(pk) for (pk,) in conn.execute(union(members, patients))}
        inside = sorted({*comp.params, "Patient"})
        targets: dict[str, set[str]] = {}
        for chunk in _chunks(sorted(found), 5000):
            referenced = (
                select(ref.c.target_type, ref.c.target_id)
                .where(
                    ref.c.res_pk.in_(chunk),
                    ref.c.target_id.is_not(None),
                    ref.c.target_type.not_in(inside),
                )
                .distinct()
            )
            for rtype, rid in conn.execute(referenced):
                targets.setdefault(rtype, set()).add(rid)
        for rtype, rids in sorted(targets.items()):
            for part in _chunks(sorted(rids), 5000):
                lookup = select(R.c.pk).where(R.c.type == rtype, R.c.id.in_(part))
                found |= {int(pk) for (pk,) in conn.execute(lookup)}
        candidates = sorted(found)
        r = self._r
        where: list[ColumnElement[bool]] = [
            r.c.deleted.is_(False),
            self.visible(r, None, request.visibility),
        ]
        if request.types:
            where.append(r.c.type.in_(sorted(request.types)))
        if request.since is not None:
            where.append(r.c.last_updated_us >= from_datetime(request.since))
        cursor = request.cursor
        before = cursor is not None and cursor.before
        if cursor is None:
            sequence = candidates
        elif before:
            sequence = [pk for pk in reversed(candidates) if pk < cursor.key]
        else:
            sequence = [pk for pk in candidates if pk > cursor.key]
        columns = [*(r.c[name] for name in _RESOURCE_COLUMNS), r.c.custodian]
        order = r.c.pk.desc() if before else r.c.pk.asc()
        rows: list[Any] = []
        for chunk in _chunks(sequence, 1000):  # in key order until the page is full
            query = select(*columns).where(r.c.pk.in_(chunk), *where).order_by(order)
            rows += conn.execute(query.limit(request.count + 1 - len(rows))).all()
            if len(rows) > request.count:
                break
        more = len(rows) > request.count
        rows = rows[: request.count]
        if before:
            rows.reverse()
        total = None
        if cursor is None and not more:
            total = len(rows)
        elif request.total:
            total = 0
            for chunk in _chunks(candidates, 5000):
                counted = select(func.count()).where(r.c.pk.in_(chunk), *where)
                total += int(conn.execute(counted.select_from(r)).scalar_one())
        items = [stored(row) for row in rows]
        next_cursor = prev_cursor = None
        if rows:
            last, first = int(rows[-1][0]), int(rows[0][0])
            if before:
                prev_cursor = Cursor((), first, before=True) if more else None
                next_cursor = Cursor((), last)
            else:
                next_cursor = Cursor((), last) if more else None
                prev_cursor = Cursor((), first, before=True) if request.cursor else None
        return SearchPage(items, [], total, next_cursor, prev_cursor)


@dataclass(frozen=True, slots=True)
class _Context:
    now_us: int
    visibility: Visibility
    depth: int = 0  # how many chain and _has links enclose the clause

    def deeper(self) -> _Context:
        return _Context(self.now_us, self.visibility, self.depth + 1)


def _merges(clause: Clause) -> bool:
    """A plain date clause on a single-valued parameter: AND-ed ones hold on one row."""
    return (
        isinstance(clause, ParamClause)
        and clause.param.type is ParamType.DATE
        and clause.param.single
        and clause.param.column is None
        and clause.modifier is None
    )


def _absent(
    r: FromClause, table: Table, key: int, cond: ColumnElement[bool] | None = None
) -> ColumnElement[bool]:
    """No row of ``table`` for this resource and parameter (matching ``cond``).

    NOT EXISTS, not NOT IN: the database can then check each candidate by the table's
    (res_pk, param) index instead of first hashing every row of the parameter.
    """
    rows = select(table.c.res_pk).where(table.c.res_pk == r.c.pk, table.c.param == key)
    if cond is not None:
        rows = rows.where(cond)
    return ~rows.exists()


_DAY = LONG_SPAN  # a date row spanning less than this is "short"


def _low_bounds(preds: Sequence[Predicate]) -> tuple[int | None, int | None]:
    """Bounds on ``low`` that every short row (high - low < a day) satisfying all
    ``preds`` lies within; None where a side is open. A superset: the predicates are
    still applied exactly."""
    low: int | None = None
    high: int | None = None
    for pred in preds:
        hull_low: int | None = None
        hull_high: int | None = None
        unbounded_low = unbounded_high = False
        for conj in pred.clauses:
            lo: int | None = None
            hi: int | None = None
            for c in conj:
                value = int(c.value)
                if c.op in (">", ">="):
                    bound = value if c.column == "low" else value - _DAY
                    lo = bound if lo is None else max(lo, bound)
                else:
                    hi = value if hi is None else min(hi, value)
            if lo is None:
                unbounded_low = True
            else:
                hull_low = lo if hull_low is None else min(hull_low, lo)
            if hi is None:
                unbounded_high = True
            else:
                hull_high = hi if hull_high is None else max(hull_high, hi)
        if not unbounded_low and hull_low is not None:
            low = hull_low if low is None else max(low, hull_low)
        if not unbounded_high and hull_high is not None:
            high = hull_high if high is None else min(high, hull_high)
    return low, high


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _tables_of(p: SearchParamDef) -> list[Table]:
    """Where rows of ``p`` live (for ``:missing``)."""
    if p.type is ParamType.TOKEN:
        return [token_table, token_text_table]
    if p.type is ParamType.COMPOSITE:
        return [composite_tables[tuple(_KINDS[c.type] for c in p.components)]]
    return [
        {
            ParamType.STRING: string_table,
            ParamType.DATE: date_table,
            ParamType.NUMBER: number_table,
            ParamType.QUANTITY: quantity_table,
            ParamType.REFERENCE: reference_table,
            ParamType.URI: uri_table,
        }[p.type]
    ]
