import random
from pathlib import Path

import pytest

from hie.identity import estimate, load_match_config

ROOT = Path(__file__).resolve().parents[3]


def test_em_recovers_m_u_and_the_match_share_without_labels() -> None:
    config = load_match_config(ROOT / "config" / "identity.toml")
    comps = config.comparisons
    rng = random.Random(3)
    # truth: 20% matches agree on each field with prob 0.9; non-matches with prob 0.05
    vectors = []
    for _ in range(4000):
        is_match = rng.random() < 0.2
        vector: list[str | None] = []
        for c in comps:
            good, bad = ("agree", "disagree") if c.comparator in ("gender", "locality") else (
                "exact", "disagree")  # fmt: skip
            agree = rng.random() < (0.9 if is_match else 0.05)
            vector.append(good if agree else bad)
        vectors.append(vector)
    fitted = estimate(config, vectors, match_share=0.5)
    assert fitted.match_share == pytest.approx(0.2, abs=0.02)
    for comp in fitted.config.comparisons:
        good = "agree" if comp.comparator in ("gender", "locality") else "exact"
        assert comp.m[good] == pytest.approx(0.9, abs=0.03)
        assert comp.u[good] == pytest.approx(0.05, abs=0.02)
        assert comp.weights[good] > 3 > 0 > comp.weights["disagree"]
    assert fitted.bayes_threshold == pytest.approx(2.0, abs=0.3)  # log2(0.8 / 0.2)


def test_missing_levels_are_left_out_and_empty_input_is_refused() -> None:
    config = load_match_config(ROOT / "config" / "identity.toml")
    n = len(config.comparisons)
    fitted = estimate(config, [[None] * n, ["exact"] + [None] * (n - 1)] * 50)
    assert fitted.iterations >= 1
    with pytest.raises(ValueError, match="no pairs"):
        estimate(config, [])
