"""The matching engine: deterministic rules first, then Fellegi-Sunter weights.

Order of decisions for a pair of records:

1. Both carry valid resident ID numbers and they differ: never linked automatically
   (``rules.different_resident_id``: NO_MATCH, or at most POSSIBLE_MATCH).
2. Both carry the same valid resident ID number: MATCH, unless a record's birth date or sex
   contradicts the number (a guardian's number on a child's record is common), which gives
   ``rules.resident_id_conflict``.
3. The same card number: MATCH.
4. Otherwise the sum of field weights decides against the two thresholds. A MATCH also needs
   the name to agree at a level listed in ``rules.auto_match_name_levels``: a name that agrees
   only in pinyin (张伟 / 章伟 / 张玮, or a pinyin-only record) gives at most POSSIBLE_MATCH.

Against clusters (the source records linked to one enterprise patient) a record is compared
with every member; the best member decides, but a member with a different valid resident ID
number vetoes as in rule 1, so a chain of links can never join two ID numbers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from hie.identity.blocking import blocking_keys
from hie.identity.compare import (
    COMPARATORS,
    Prepared,
    compare_birth_date,
    compare_gender,
    compare_identifier,
    compare_name,
    prepare,
)
from hie.identity.config import MatchConfig
from hie.identity.record import PersonRecord

__all__ = ["Candidate", "Comparison", "Decision", "Matcher", "Outcome"]


class Outcome(enum.StrEnum):
    MATCH = "MATCH"
    POSSIBLE_MATCH = "POSSIBLE_MATCH"
    NO_MATCH = "NO_MATCH"


_RANK = {Outcome.MATCH: 2, Outcome.POSSIBLE_MATCH: 1, Outcome.NO_MATCH: 0}


@dataclass(frozen=True, slots=True)
class Comparison:
    outcome: Outcome
    score: float
    reason: str  # resident-id, card-number, weights, different-resident-id, resident-id-conflict,
    #              name-not-certain (capped), ambiguous
    levels: tuple[tuple[str, str | None], ...] = ()

    def level(self, field: str) -> str | None:
        return dict(self.levels).get(field)


@dataclass(frozen=True, slots=True)
class Candidate:
    enterprise_id: str
    record_id: str  # the member record that decided
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    enterprise_id: str | None
    score: float
    reason: str
    candidates: tuple[Candidate, ...]


def _outcome(name: str) -> Outcome:
    return Outcome.NO_MATCH if name == "no_match" else Outcome.POSSIBLE_MATCH


class Matcher:
    """Compares person records under one :class:`MatchConfig`.

    ``resident_id_valid`` says whether a normalised resident ID number is valid (inject
    ``card.resident_id.is_valid`` with a clock); ``protect`` turns identifiers in blocking keys
    into blind-index values (``BlindIndex.value``).
    """

    def __init__(
        self,
        config: MatchConfig,
        *,
        resident_id_valid: Callable[[str], bool],
        protect: Callable[[str, str], str] | None = None,
    ) -> None:
        self.config = config
        self._valid = resident_id_valid
        self._protect = protect
        self._cap_on_name = any(c.comparator == "name" for c in config.comparisons)

    def prepare(self, record: PersonRecord | Prepared) -> Prepared:
        if isinstance(record, Prepared):
            return record
        return prepare(record, self._valid)

    def blocking_keys(self, record: PersonRecord | Prepared) -> list[str]:
        return blocking_keys(self.prepare(record), self.config.blocking_passes, self._protect)

    def score(self, a: Prepared, b: Prepared) -> tuple[float, tuple[tuple[str, str | None], ...]]:
        total = 0.0
        levels: list[tuple[str, str | None]] = []
        for comp in self.config.comparisons:
            if comp.comparator == "name":
                level = compare_name(a, b, self.config.latin_names_are_pinyin)
            elif comp.comparator == "identifier":
                level = compare_identifier(a, b, comp.system)
            else:
                level = COMPARATORS[comp.comparator](a, b)
            levels.append((comp.key, level))
            if level is not None:
                total += comp.weights[level]
        return total, tuple(levels)

    def compare(self, a: PersonRecord | Prepared, b: PersonRecord | Prepared) -> Comparison:
        pa, pb = self.prepare(a), self.prepare(b)
        score, levels = self.score(pa, pb)
        cfg = self.config
        if pa.resident_id_valid and pb.resident_id_valid:
            if pa.resident_id != pb.resident_id:
                outcome = _outcome(cfg.different_resident_id)
                if outcome is Outcome.POSSIBLE_MATCH:
                    outcome = self._by_score(score, cap=True)
                return Comparison(outcome, score, "different-resident-id", levels)
            if _contradicts_id(pa) or _contradicts_id(pb):
                outcome = _outcome(cfg.resident_id_conflict)
                return Comparison(outcome, score, "resident-id-conflict", levels)
            return Comparison(Outcome.MATCH, score, "resident-id", levels)
        if pa.card_no and pa.card_no == pb.card_no:
            return Comparison(Outcome.MATCH, score, "card-number", levels)
        name_level = dict(levels).get("name")
        capped = self._cap_on_name and name_level not in cfg.auto_match_name_levels
        outcome = self._by_score(score, cap=capped)
        reason = "name-not-certain" if capped and score >= cfg.match_threshold else "weights"
        return Comparison(outcome, score, reason, levels)

    def _by_score(self, score: float, *, cap: bool) -> Outcome:
        if score >= self.config.match_threshold and not cap:
            return Outcome.MATCH
        if score >= self.config.possible_threshold:
            return Outcome.POSSIBLE_MATCH
        return Outcome.NO_MATCH

    def rank(
        self,
        record: PersonRecord | Prepared,
        clusters: Mapping[str, Sequence[PersonRecord | Prepared]],
    ) -> list[Candidate]:
        """One candidate per enterprise patient, best first."""
        p = self.prepare(record)
        out: list[Candidate] = []
        for enterprise_id, members in clusters.items():
            best: tuple[int, float, str, Comparison] | None = None
            veto: tuple[str, Comparison] | None = None
            for member in members:
                m = self.prepare(member)
                c = self.compare(p, m)
                if c.reason == "different-resident-id":
                    veto = (m.record.record_id, c)
                key = (_RANK[c.outcome], c.score, m.record.record_id, c)
                if best is None or key[:2] > best[:2]:
                    best = key
            if best is None:
                continue
            if veto is not None:
                out.append(Candidate(enterprise_id, veto[0], veto[1]))
            else:
                out.append(Candidate(enterprise_id, best[2], best[3]))
        out.sort(key=lambda c: (_RANK[c.comparison.outcome], c.comparison.score), reverse=True)
        return out

    def decide(
        self,
        record: PersonRecord | Prepared,
        clusters: Mapping[str, Sequence[PersonRecord | Prepared]],
    ) -> Decision:
        """Link to the best enterprise patient, or to none.

        Two or more enterprise patients that each MATCH make the decision ambiguous
        (``rules.ambiguous``): the best is proposed but not linked automatically.
        """
        ranked = self.rank(record, clusters)
        if not ranked or ranked[0].comparison.outcome is Outcome.NO_MATCH:
            score = ranked[0].comparison.score if ranked else 0.0
            return Decision(Outcome.NO_MATCH, None, score, "no-candidate", tuple(ranked))
        top = ranked[0]
        outcome, reason = top.comparison.outcome, top.comparison.reason
        if (
            outcome is Outcome.MATCH
            and len(ranked) > 1
            and ranked[1].comparison.outcome is Outcome.MATCH
            and top.comparison.reason not in ("resident-id", "card-number")
        ):
            outcome, reason = _outcome(self.config.ambiguous), "ambiguous"
        return Decision(outcome, top.enterprise_id, top.comparison.score, reason, tuple(ranked))

    def compare_many(
        self, record: PersonRecord | Prepared, others: Iterable[PersonRecord | Prepared]
    ) -> list[tuple[Prepared, Comparison]]:
        p = self.prepare(record)
        return [(o, self.compare(p, o)) for o in (self.prepare(x) for x in others)]


def _contradicts_id(p: Prepared) -> bool:
    """The record's own birth date (or sex) clearly disagrees with its resident ID number.

    A typo or a day/month swap in the birth date is not a contradiction; a different date
    is (a guardian's number on a child's record), and so is a different sex unless the birth
    date confirms the number.
    """
    rid = p.resident_id
    id_view = replace(p, birth=rid[6:14], gender="male" if int(rid[16]) % 2 else "female")
    dob = compare_birth_date(p, id_view)
    if dob == "disagree":
        return True
    return compare_gender(p, id_view) == "disagree" and dob != "exact"
