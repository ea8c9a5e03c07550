"""FHIR R4 ConceptMaps: load them, translate a (system, code) to target codings.

Maps are plain ConceptMap JSON resources. The bundled ones live in ``terminology/data``
(``conceptmap-*.json``); more can be loaded from files or directories (a hospital's own
map of its local lab codes, for example). Besides codes, elements are indexed by their
display (case-insensitive), so a map can translate by name where a sender has no stable
code: ``血红蛋白`` as well as ``HGB``.

Only ``equivalent``/``equal``/``wider``/``subsumes``/``relatedto`` (and unspecified)
targets translate; ``unmatched`` and ``disjoint`` never do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
COMMON_CN_LAB = "urn:hie:cs:cn-lab-common"
"""Source system of the bundled map of common Chinese lab abbreviations and names."""

_USABLE = frozenset({"", "equivalent", "equal", "wider", "subsumes", "relatedto", "inexact"})


class ConceptMapError(ValueError):
    """A file is not a usable ConceptMap."""


@dataclass(frozen=True, slots=True)
class Translation:
    system: str
    code: str
    display: str
    equivalence: str
    source_map: str

    def coding(self) -> dict[str, str]:
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class ConceptMaps:
    """An index over loaded ConceptMaps. Immutable once built; safe to share."""

    def __init__(self, maps: Iterable[Mapping[str, Any]] = ()) -> None:
        self._by_code: dict[tuple[str, str], list[Translation]] = {}
        self._by_display: dict[tuple[str, str], list[Translation]] = {}
        self.urls: list[str] = []
        for cm in maps:
            self._add(cm)

    def _add(self, cm: Mapping[str, Any]) -> None:
        if cm.get("resourceType") != "ConceptMap":
            raise ConceptMapError("not a ConceptMap resource")
        url = str(cm.get("url") or cm.get("id") or "")
        self.urls.append(url)
        for group in cm.get("group", []):
            source = group.get("source") or cm.get("sourceUri") or ""
            target = group.get("target") or cm.get("targetUri") or ""
            if not source or not target:
                raise ConceptMapError(f"{url}: a group needs source and target systems")
            for element in group.get("element", []):
                found = [
                    Translation(
                        target,
                        t["code"],
                        t.get("display", ""),
                        t.get("equivalence", ""),
                        url,
                    )
                    for t in element.get("target", [])
                    if t.get("code") and t.get("equivalence", "") in _USABLE
                ]
                if not found:
                    continue
                if element.get("code"):
                    _extend(self._by_code.setdefault((source, element["code"]), []), found)
                if element.get("display"):
                    key = (source, _norm(element["display"]))
                    _extend(self._by_display.setdefault(key, []), found)

    def translate(self, system: str, code: str) -> list[Translation]:
        return list(self._by_code.get((system, code), ()))

    def translate_display(self, system: str, display: str) -> list[Translation]:
        return list(self._by_display.get((system, _norm(display)), ()))

    def __len__(self) -> int:
        return len(self.urls)


def _extend(into: list[Translation], found: list[Translation]) -> None:
    """Add translations, once per target code (aliases share targets)."""
    have = {(t.system, t.code) for t in into}
    for t in found:
        if (t.system, t.code) not in have:
            have.add((t.system, t.code))
            into.append(t)


def read_conceptmap(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConceptMapError(f"{path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "ConceptMap":
        raise ConceptMapError(f"{path}: not a ConceptMap resource")
    return data


def load_conceptmaps(*paths: Path | str, bundled: bool = True) -> ConceptMaps:
    """The bundled maps plus ConceptMap files (or directories of ``*.json``) given."""
    files: list[Path] = []
    if bundled:
        files.extend(sorted(DATA_DIR.glob("conceptmap-*.json")))
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    return ConceptMaps(read_conceptmap(f) for f in files)
