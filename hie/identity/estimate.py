"""Unsupervised estimation of the m and u probabilities (expectation-maximisation).

Given the agreement levels of many candidate pairs (what blocking produces), EM fits a
two-class mixture, matches and non-matches, under the Fellegi-Sunter assumption that fields
agree independently within each class. No labels are needed: run it over a sample of real
candidate pairs to refit ``config/identity.toml`` for local data. Missing values (level None)
are left out of their field's counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hie.identity.config import COMPARATOR_LEVELS, FieldWeights, MatchConfig

__all__ = ["Estimate", "estimate"]

_FLOOR = 1e-6


@dataclass(frozen=True, slots=True)
class Estimate:
    config: MatchConfig  # the input config with the fitted weights
    match_share: float  # estimated share of matches among the pairs
    iterations: int

    @property
    def bayes_threshold(self) -> float:
        """The score above which a pair is more likely a match than not."""
        p = min(max(self.match_share, _FLOOR), 1 - _FLOOR)
        return math.log2((1 - p) / p)


def estimate(
    config: MatchConfig,
    pairs: Iterable[Sequence[str | None]],
    *,
    match_share: float = 0.1,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> Estimate:
    """Fit m and u for every comparison of ``config`` from the pairs' level vectors.

    Each vector lists one level (or None) per comparison, in ``config.comparisons`` order,
    as :meth:`Matcher.score` reports them. The config's own m and u are the starting point.
    """
    counts = Counter(tuple(v) for v in pairs)
    if not counts:
        raise ValueError("no pairs to estimate from")
    comps = config.comparisons
    m = [dict(c.m) for c in comps]
    u = [dict(c.u) for c in comps]
    p = match_share
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007
        m_acc: list[dict[str, float]] = [{} for _ in comps]
        u_acc: list[dict[str, float]] = [{} for _ in comps]
        g_total = n_total = 0.0
        for vector, n in counts.items():
            lm, lu = math.log(p), math.log(1 - p)
            for i, level in enumerate(vector):
                if level is not None:
                    lm += math.log(m[i][level])
                    lu += math.log(u[i][level])
            g = 1 / (1 + math.exp(min(lu - lm, 700)))
            g_total += g * n
            n_total += n
            for i, level in enumerate(vector):
                if level is not None:
                    m_acc[i][level] = m_acc[i].get(level, 0.0) + g * n
                    u_acc[i][level] = u_acc[i].get(level, 0.0) + (1 - g) * n
        new_p = min(max(g_total / n_total, _FLOOR), 1 - _FLOOR)
        change = abs(new_p - p)
        for i, comp in enumerate(comps):
            for acc, table in ((m_acc[i], m), (u_acc[i], u)):
                total = sum(acc.values())
                if total <= 0:
                    continue
                for level in COMPARATOR_LEVELS[comp.comparator]:
                    new = max(acc.get(level, 0.0) / total, _FLOOR)
                    change = max(change, abs(new - table[i][level]))
                    table[i][level] = new
        p = new_p
        if change < tolerance:
            break
    fitted = tuple(
        FieldWeights.from_probabilities(c.comparator, m[i], u[i], c.system)
        for i, c in enumerate(comps)
    )
    return Estimate(config.replace(comparisons=fitted), p, iterations)
