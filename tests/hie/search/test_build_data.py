"""The data generator on a miniature SearchParameter and StructureDefinition input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hie.search import build_data
from hie.search.definitions import ParamType, SearchRegistry
from hie.search.extract import Extractor
from hie.search.rows import TokenRow


def sd(name: str, kind: str, elements: list[tuple[str, list[str]]]) -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "StructureDefinition",
            "id": name,
            "kind": kind,
            "abstract": name == "Resource",
            "snapshot": {
                "element": [{"path": name}]
                + [{"path": p, "type": [{"code": t} for t in ts]} for p, ts in elements]
            },
        }
    }


def sp(code: str, base: list[str], ptype: str, expr: str) -> dict[str, Any]:
    url = f"http://hl7.org/fhir/SearchParameter/{base[0]}-{code}"
    return {"resource": {"url": url, "code": code, "base": base, "type": ptype, "expression": expr}}


def test_build_and_load(tmp_path: Path) -> None:
    system_string = "http://hl7.org/fhirpath/System.String"
    thing = [("Thing.status", ["code"]), ("Thing.value[x]", ["string", "Coding"])]
    resources = {
        "entry": [
            sd("Resource", "resource", [("Resource.id", [system_string])]),
            sd("Thing", "resource", thing),
            sd("Other", "resource", [("Other.status", ["code"])]),
        ]
    }
    types = {"entry": [sd("Coding", "complex-type", [("Coding.code", ["code"])])]}
    search = {
        "entry": [
            sp("_id", ["Resource"], "token", "Resource.id"),
            sp("status", ["Thing", "Other"], "token", "Thing.status | Other.status"),
            sp("value", ["Thing"], "token", "(Thing.value as Coding)"),
        ]
    }
    (tmp_path / "profiles-resources.json").write_text(json.dumps(resources))
    (tmp_path / "profiles-types.json").write_text(json.dumps(types))
    (tmp_path / "sp.json").write_text(json.dumps(search))
    out = tmp_path / "out.json"
    code = build_data.main([str(tmp_path / "sp.json"), str(tmp_path), str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["resources"]["Other"]["status"]["expr"] == "Other.status"
    assert data["resources"]["Thing"]["status"]["url"] == "Thing-status"
    assert "Thing.value[x]" in data["elements"]
    assert "Other.value[x]" not in data["elements"]  # only what expressions reach

    registry = SearchRegistry(data)
    assert registry.resource_types == ("Other", "Thing")
    p = registry.param("Thing", "value")
    assert p is not None
    assert p.type is ParamType.TOKEN
    assert registry.param("Other", "_id") is not None
    rows = Extractor(registry).extract(
        {"resourceType": "Thing", "status": "ok", "valueCoding": {"system": "s", "code": "c"}}
    )
    assert rows == [TokenRow("status", None, "ok"), TokenRow("value", "s", "c")]
    assert registry.compartment("Patient") == {}  # no compartment file given


def test_compartment_and_summary_elements(tmp_path: Path) -> None:
    thing = sd("Thing", "resource", [("Thing.status", ["code"]), ("Thing.note", ["string"])])
    elements = thing["resource"]["snapshot"]["element"]
    elements[1].update({"isSummary": True, "min": 1})
    resources = {"entry": [thing]}
    (tmp_path / "profiles-resources.json").write_text(json.dumps(resources))
    (tmp_path / "profiles-types.json").write_text(json.dumps({"entry": []}))
    compartment = {"resource": [{"code": "Thing", "param": ["status"]}, {"code": "Other"}]}
    (tmp_path / "compartmentdefinition-patient.json").write_text(json.dumps(compartment))
    (tmp_path / "sp.json").write_text(json.dumps({"entry": []}))
    out = tmp_path / "out.json"
    assert build_data.main([str(tmp_path / "sp.json"), str(tmp_path), str(out)]) == 0
    registry = SearchRegistry(json.loads(out.read_text()))
    assert registry.compartment("Patient") == {"Thing": ("status",)}
    assert registry.summary_elements("Thing") == ("status",)
    assert registry.mandatory_elements("Thing") == ("status",)


def test_usage_message() -> None:
    assert build_data.main([]) == 2
