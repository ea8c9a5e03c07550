"""hie.fhir.r4b: model access and the committed R4/R4B comparison."""

from __future__ import annotations

import json

import pydantic
import pytest
from fhir.resources.R4B import patient as r4b_patient

from hie.fhir import r4b
from hie.fhir.definitions import load_r4_definitions
from hie.fhir.types import SERVED_TYPES


def test_model_for_types_and_backbones() -> None:
    assert r4b.model_for("Patient") is r4b_patient.Patient
    assert r4b.model_for("Patient.contact") is r4b_patient.PatientContact
    assert r4b.model_for("MedicinalProduct") is None


def test_primitive_adapter_uses_r4b_formats() -> None:
    adapter = r4b.primitive_adapter("date")
    assert adapter is not None
    adapter.validate_python("2020-01")
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_python("2020-13")
    assert r4b.primitive_adapter("nothing") is None


def test_committed_differences_match_the_installed_models() -> None:
    """Fails when fhir.resources changes: rerun `python -m hie.fhir.r4b`."""
    defs = load_r4_definitions()
    committed = r4b.load_r4b_differences()
    document = r4b.gaps_document(defs, SERVED_TYPES)
    assert json.loads(json.dumps(document["gaps"])) == committed.gaps
    assert json.loads(json.dumps(document["r4bOnly"])) == committed.r4b_only


def test_known_differences() -> None:
    gaps, r4b_only = r4b.load_r4b_differences()
    assert gaps["Extension"]["valueMeta"] == "absent"
    assert gaps["Extension"]["_valueString"] == "absent"
    assert gaps["EvidenceVariable.characteristic"]["timeFromStart"] == "type"
    assert "name" in gaps["Evidence"]
    assert "Patient" not in gaps
    assert r4b_only["ActivityDefinition"] == ["subjectCanonical"]
    assert "valueCodeableReference" in r4b_only["Extension"]
