"""Matching rules, weights and thresholds, loaded from ``config/identity.toml``.

Each comparison names a field comparator and gives, for each agreement level, the
Fellegi-Sunter probabilities ``m`` (the level's frequency among true matches) and ``u`` (among
non-matches). A level's weight is ``log2(m / u)``; a missing value weighs 0. The record pair's
score is the sum of its weights.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BLOCKING_ATOMS",
    "COMPARATOR_LEVELS",
    "ConfigError",
    "FieldWeights",
    "MatchConfig",
    "load_match_config",
]

# Levels each comparator can report, best first.
COMPARATOR_LEVELS: dict[str, tuple[str, ...]] = {
    "name": ("exact", "hanzi_typo", "pinyin", "pinyin_typo", "disagree"),
    "family_name": ("exact", "similar", "partial", "disagree"),
    "given_name": ("exact", "similar", "partial", "disagree"),
    "birth_date": ("exact", "swapped", "typo", "disagree"),
    "gender": ("agree", "disagree"),
    "phone": ("exact", "typo", "disagree"),
    "address": ("exact", "similar", "disagree"),
    "locality": ("agree", "disagree"),
    "postal_code": ("exact", "typo", "disagree"),
    "resident_id": ("exact", "typo", "disagree"),
    "identifier": ("exact", "typo", "disagree"),
}

BLOCKING_ATOMS = frozenset(
    {
        "resident_id", "card_no", "phone", "name", "family", "given",
        "family_soundex", "given_soundex", "birth_date", "birth_year", "birth_month_day",
        "postal_code", "locality", "identifier",
    }
)  # fmt: skip

_OUTCOME_RULES = ("no_match", "possible_match")


class ConfigError(ValueError):
    """The identity configuration is invalid; the message names the setting."""


@dataclass(frozen=True, slots=True)
class FieldWeights:
    comparator: str
    weights: Mapping[str, float]  # level -> log2(m/u)
    system: str = ""  # for the "identifier" comparator
    m: Mapping[str, float] = field(default_factory=dict)
    u: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_probabilities(
        cls, comparator: str, m: Mapping[str, float], u: Mapping[str, float], system: str = ""
    ) -> FieldWeights:
        weights = {level: math.log2(m[level] / u[level]) for level in m}
        return cls(comparator, weights, system, dict(m), dict(u))

    @property
    def key(self) -> str:
        return f"{self.comparator}:{self.system}" if self.system else self.comparator


@dataclass(frozen=True, slots=True)
class MatchConfig:
    match_threshold: float
    possible_threshold: float
    comparisons: tuple[FieldWeights, ...]
    blocking_passes: tuple[tuple[str, ...], ...]
    different_resident_id: str = "no_match"
    resident_id_conflict: str = "possible_match"
    auto_match_name_levels: frozenset[str] = frozenset({"exact", "hanzi_typo"})
    latin_names_are_pinyin: bool = True
    ambiguous: str = "possible_match"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MatchConfig:
        try:
            return _build(data)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"identity config: missing or malformed setting {exc}") from exc

    def replace(self, **changes: Any) -> MatchConfig:
        from dataclasses import replace

        return replace(self, **changes)


def _build(data: Mapping[str, Any]) -> MatchConfig:
    thresholds = data["thresholds"]
    rules = data.get("rules", {})
    comparisons = []
    for i, comp in enumerate(data["comparison"]):
        name = comp["field"]
        where = f"comparison[{i}] ({name})"
        if name not in COMPARATOR_LEVELS:
            raise ConfigError(f"{where}: unknown field; known: {sorted(COMPARATOR_LEVELS)}")
        ms: dict[str, float] = {}
        us: dict[str, float] = {}
        for level, mu in comp["levels"].items():
            if level not in COMPARATOR_LEVELS[name]:
                raise ConfigError(
                    f"{where}: unknown level {level!r}; known: {COMPARATOR_LEVELS[name]}"
                )
            m, u = float(mu["m"]), float(mu["u"])
            if not (0 < m <= 1 and 0 < u <= 1):
                raise ConfigError(f"{where}.{level}: m and u must be in (0, 1]")
            ms[level], us[level] = m, u
        missing = set(COMPARATOR_LEVELS[name]) - set(ms)
        if missing:
            raise ConfigError(f"{where}: no m/u for levels {sorted(missing)}")
        system = str(comp.get("system", ""))
        if name == "identifier" and not system:
            raise ConfigError(f"{where}: the identifier comparator needs a system")
        comparisons.append(FieldWeights.from_probabilities(name, ms, us, system))
    passes = []
    for p in data["blocking"]["passes"]:
        atoms = tuple(str(a) for a in p)
        for atom in atoms:
            if atom.partition(":")[0] not in BLOCKING_ATOMS:
                raise ConfigError(
                    f"blocking.passes: unknown key part {atom!r}; known: {sorted(BLOCKING_ATOMS)}"
                )
        passes.append(atoms)
    match, possible = float(thresholds["match"]), float(thresholds["possible"])
    if possible > match:
        raise ConfigError("thresholds: possible must not exceed match")
    for rule in ("different_resident_id", "resident_id_conflict", "ambiguous"):
        if rules.get(rule, "possible_match") not in _OUTCOME_RULES and rule in rules:
            raise ConfigError(f"rules.{rule}: must be one of {_OUTCOME_RULES}")
    return MatchConfig(
        match_threshold=match,
        possible_threshold=possible,
        comparisons=tuple(comparisons),
        blocking_passes=tuple(passes),
        different_resident_id=rules.get("different_resident_id", "no_match"),
        resident_id_conflict=rules.get("resident_id_conflict", "possible_match"),
        auto_match_name_levels=frozenset(
            rules.get("auto_match_name_levels", ["exact", "hanzi_typo"])
        ),
        latin_names_are_pinyin=bool(rules.get("latin_names_are_pinyin", True)),
        ambiguous=rules.get("ambiguous", "possible_match"),
    )


def load_match_config(path: Path) -> MatchConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return MatchConfig.from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
