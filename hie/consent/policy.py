"""The consent policy's settings, loaded from ``config/consent.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hie.storage.ports import Code

V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "consent.toml"


@dataclass(frozen=True, slots=True)
class ConsentPolicy:
    hidden_status: int = 404
    default_purpose: str = "TREAT"
    treatment_purposes: frozenset[str] = frozenset({"TREAT", "ETREAT"})
    break_glass_purpose: str = "BTG"
    break_glass_ttl: int = 3600
    platforms: frozenset[str] = frozenset()
    sensitive_labels: frozenset[Code] = frozenset(
        (V3_ACT_CODE, c) for c in ("HIV", "PSY", "ETH", "SDV", "GRF", "SUD", "GDIS")
    )
    sensitive_codes: frozenset[Code] = frozenset()
    recorder_scope: str = "consent.record"


def _codings(raw: Any, name: str) -> frozenset[Code]:
    out: set[Code] = set()
    for group in raw or ():
        if not isinstance(group, dict) or not isinstance(group.get("system"), str):
            raise ValueError(f"consent policy: each [[{name}]] needs a system and codes")
        out.update((group["system"], str(code)) for code in group.get("codes", ()))
    return frozenset(out)


def policy_from(raw: dict[str, Any]) -> ConsentPolicy:
    known = {
        "hidden_status",
        "default_purpose",
        "treatment_purposes",
        "break_glass_purpose",
        "break_glass_ttl",
        "platforms",
        "sensitive_labels",
        "sensitive_codes",
        "recorder_scope",
    }
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"consent policy: unknown settings {sorted(unknown)}")
    status = int(raw.get("hidden_status", 404))
    if status not in (403, 404):
        raise ValueError("consent policy: hidden_status must be 403 or 404")
    base = ConsentPolicy()
    return ConsentPolicy(
        hidden_status=status,
        default_purpose=str(raw.get("default_purpose", base.default_purpose)),
        treatment_purposes=frozenset(raw.get("treatment_purposes", base.treatment_purposes)),
        break_glass_purpose=str(raw.get("break_glass_purpose", base.break_glass_purpose)),
        break_glass_ttl=int(raw.get("break_glass_ttl", base.break_glass_ttl)),
        platforms=frozenset(raw.get("platforms", ())),
        sensitive_labels=(
            _codings(raw["sensitive_labels"], "sensitive_labels")
            if "sensitive_labels" in raw
            else base.sensitive_labels
        ),
        sensitive_codes=_codings(raw.get("sensitive_codes"), "sensitive_codes"),
        recorder_scope=str(raw.get("recorder_scope", base.recorder_scope)),
    )


def load_policy(path: Path | None = None) -> ConsentPolicy:
    with open(path or DEFAULT_PATH, "rb") as f:
        return policy_from(tomllib.load(f))
