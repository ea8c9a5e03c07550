"""hie.fhir.types against the R4 definitions and the installed R4B models."""

from __future__ import annotations

from fhir.resources.R4B import get_fhir_model_class

from hie.fhir.definitions import load_r4_definitions
from hie.fhir.types import (
    R4_TYPES_NOT_SERVED,
    R4B_ONLY_TYPES,
    SERVED_TYPES,
    is_resource_type,
    unserved_reason,
)


def _r4b_has_resource(name: str) -> bool:
    try:
        model = get_fhir_model_class(name)
    except ValueError:
        return False
    return bool(model.has_resource_base()) and model.get_resource_type() == name


def test_served_types_are_r4_types_the_r4b_models_have() -> None:
    r4 = load_r4_definitions().resource_types()
    assert {t for t in r4 if _r4b_has_resource(t)} == SERVED_TYPES
    assert r4 - SERVED_TYPES == R4_TYPES_NOT_SERVED
    assert len(SERVED_TYPES) == 128
    assert {
        "Patient",
        "Encounter",
        "Observation",
        "Bundle",
        "Consent",
        "AuditEvent",
    } <= SERVED_TYPES


def test_r4b_only_types_are_r4b_models_r4_lacks() -> None:
    r4 = load_r4_definitions().resource_types()
    assert all(_r4b_has_resource(t) for t in R4B_ONLY_TYPES)
    assert not R4B_ONLY_TYPES & r4
    assert {"Citation", "SubscriptionTopic", "SubscriptionStatus", "Ingredient"} <= R4B_ONLY_TYPES


def test_is_resource_type() -> None:
    assert is_resource_type("Patient")
    assert not is_resource_type("patient")
    assert not is_resource_type("Citation")
    assert not is_resource_type("MedicinalProduct")
    assert not is_resource_type("Resource")
    assert not is_resource_type(None)


def test_unserved_reason_says_why() -> None:
    assert "R4B" in unserved_reason("Citation")
    assert "does not support" in unserved_reason("SubstanceSpecification")
    assert "abstract" in unserved_reason("DomainResource")
    assert "not a FHIR R4 resource type" in unserved_reason("Foo")
    assert "string" in unserved_reason(["Patient"])
