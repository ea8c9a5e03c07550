"""Range predicates shared by the SQL planner and the tests.

A prefix search (``date=ge2013-01``, ``value-quantity=lt5.4``) compares the range of
the search value with the range an index row stores. Each comparison is expressed
once, here, as a :class:`Predicate` over the row's ``low``/``high`` columns: an OR of
ANDs of simple bound comparisons. The SQL planner renders it as SQL; the tests and the
in-memory store evaluate it with :meth:`Predicate.matches`. Both therefore agree.

A ``None`` bound in a row is unbounded (an open Period or Range end): it compares as
below (``low``) or above (``high``) every value.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Column = Literal["low", "high"]
Op = Literal["<", "<=", ">", ">="]
Scalar = int | Decimal

_OPS: dict[str, Callable[[Scalar, Scalar], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class Compare:
    """``row.<column> <op> value``."""

    column: Column
    op: Op
    value: Scalar

    def matches(self, low: Scalar | None, high: Scalar | None) -> bool:
        actual = low if self.column == "low" else high
        if actual is None:
            # An open low end is below everything, an open high end above everything.
            below = self.column == "low"
            return below if self.op in ("<", "<=") else not below
        return _OPS[self.op](actual, self.value)


@dataclass(frozen=True, slots=True)
class Predicate:
    """OR of ANDs of :class:`Compare`: ``any(all(c) for c in clauses)``."""

    clauses: tuple[tuple[Compare, ...], ...]

    def matches(self, low: Scalar | None, high: Scalar | None) -> bool:
        return any(all(c.matches(low, high) for c in conj) for conj in self.clauses)


def _p(*clauses: tuple[Compare, ...]) -> Predicate:
    return Predicate(tuple(clauses))


def range_predicate(
    prefix: str, q_low: Scalar, q_high: Scalar, *, high_inclusive: bool = True
) -> Predicate:
    """The R4 prefix semantics for a search range ``[q_low, q_high]``.

    Date ranges are inclusive integers (epoch microseconds); a number's precision range
    ``[99.5, 100.5)`` is half-open, so numbers pass ``high_inclusive=False``.

    Per the R4 search page, with the target range ``[low, high]``:
    ``eq`` the search range contains the target; ``ne`` it does not; ``gt`` the range
    above the search value overlaps the target; ``lt`` the range below does;
    ``ge``/``le`` as ``gt``/``lt`` or ``eq``; ``sa`` the target starts after the search
    range; ``eb`` it ends before. ``ap`` is handled by the callers (it widens the range
    and then asks for overlap, see :func:`overlap_predicate`).
    """
    inside: Op = "<=" if high_inclusive else "<"
    beyond: Op = ">" if high_inclusive else ">="
    contained = (Compare("low", ">=", q_low), Compare("high", inside, q_high))
    if prefix == "eq":
        return _p(contained)
    if prefix == "ne":
        return _p((Compare("low", "<", q_low),), (Compare("high", beyond, q_high),))
    if prefix == "gt":
        return _p((Compare("high", beyond, q_high),))
    if prefix == "lt":
        return _p((Compare("low", "<", q_low),))
    if prefix == "ge":
        return _p((Compare("high", beyond, q_high),), contained)
    if prefix == "le":
        return _p((Compare("low", "<", q_low),), contained)
    if prefix == "sa":
        return _p((Compare("low", beyond, q_high),))
    if prefix == "eb":
        return _p((Compare("high", "<", q_low),))
    raise ValueError(f"prefix {prefix!r} has no plain range form")


def overlap_predicate(q_low: Scalar, q_high: Scalar) -> Predicate:
    """The target range overlaps ``[q_low, q_high]``."""
    return _p((Compare("low", "<=", q_high), Compare("high", ">=", q_low)))
