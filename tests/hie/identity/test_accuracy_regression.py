"""A small run of bench/identity_accuracy.py, so a change that hurts accuracy fails a test."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))

from identity_accuracy import run_synthetic  # noqa: E402

from hie.identity import load_match_config  # noqa: E402


def test_synthetic_population_links_accurately_and_never_joins_two_ids() -> None:
    result = run_synthetic(
        800, seed=11, config=load_match_config(ROOT / "config" / "identity.toml")
    )
    assert result["provisional"].f1 >= 0.98
    assert result["auto"].precision >= 0.995
    assert result["cross_id_auto_links"] == 0
    assert result["auto_clusters_with_two_ids"] == 0
    assert result["blocking_recall"] >= 0.99
