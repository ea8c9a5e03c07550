"""ConceptMaps: the bundled Chinese lab map and loading more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terminology.conceptmaps import COMMON_CN_LAB, ConceptMapError, load_conceptmaps


def test_bundled_map_translates_codes_and_chinese_names() -> None:
    maps = load_conceptmaps()
    (hgb,) = maps.translate(COMMON_CN_LAB, "HGB")
    assert (hgb.system, hgb.code) == ("http://loinc.org", "718-7")
    assert hgb.coding() == {
        "system": "http://loinc.org",
        "code": "718-7",
        "display": "Hemoglobin [Mass/volume] in Blood",
    }
    (by_name,) = maps.translate_display(COMMON_CN_LAB, "血红蛋白")
    assert by_name.code == "718-7"
    assert maps.translate(COMMON_CN_LAB, "GPT")[0].code == "1742-6"  # an alias of ALT
    assert maps.translate(COMMON_CN_LAB, "NOPE") == []


def test_loading_a_hospitals_own_map(tmp_path: Path) -> None:
    own = {
        "resourceType": "ConceptMap",
        "url": "urn:example:his-lab",
        "status": "draft",
        "group": [
            {
                "source": "urn:hie:hl7v2:MYZX:cs:L",
                "target": "http://loinc.org",
                "element": [
                    {"code": "1001", "target": [{"code": "2345-7", "equivalence": "equivalent"}]},
                    {"code": "1002", "target": [{"code": "x", "equivalence": "disjoint"}]},
                ],
            }
        ],
    }
    (tmp_path / "his.json").write_text(json.dumps(own))
    maps = load_conceptmaps(tmp_path)
    assert len(maps) == 2
    assert maps.translate("urn:hie:hl7v2:MYZX:cs:L", "1001")[0].code == "2345-7"
    assert maps.translate("urn:hie:hl7v2:MYZX:cs:L", "1002") == []


def test_a_file_that_is_not_a_conceptmap_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "ValueSet"}')
    with pytest.raises(ConceptMapError, match="not a ConceptMap"):
        load_conceptmaps(bad)
