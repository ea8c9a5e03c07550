"""hie.fhir.definitions: the shipped R4 element tables."""

from __future__ import annotations

import pytest

from hie.fhir.definitions import R4Definitions, load_r4_definitions


@pytest.fixture(scope="module")
def defs() -> R4Definitions:
    return load_r4_definitions()


def test_resource_types_are_the_r4_set(defs: R4Definitions) -> None:
    types = defs.resource_types()
    assert len(types) == 146
    assert {
        "Patient",
        "Observation",
        "Bundle",
        "MedicinalProduct",
        "EffectEvidenceSynthesis",
    } <= types
    # R4B additions (SubscriptionStatus ships in the source package) and abstract types.
    assert not {"SubscriptionStatus", "Citation", "Resource", "DomainResource"} & types


def test_inheritance_from_resource_and_domain_resource(defs: R4Definitions) -> None:
    patient = defs.types["Patient"].elements
    for name in ("id", "meta", "implicitRules", "language", "text", "contained", "extension"):
        assert name in patient
    assert patient["contained"].type == "Resource"
    assert patient["contained"].array
    assert "text" not in defs.types["Bundle"].elements  # Bundle is a Resource only
    assert defs.types["Patient"].elements["id"].type == "id"


def test_backbone_and_inline_elements(defs: R4Definitions) -> None:
    contact = defs.types["Patient"].elements["contact"]
    assert (contact.type, contact.array) == ("Patient.contact", True)
    backbone = defs.types["Patient.contact"].elements
    assert {"id", "extension", "modifierExtension", "relationship", "name"} <= set(backbone)
    assert defs.types["Patient.contact"].kind == "backbone"
    # Timing.repeat is an Element, so it has no modifierExtension.
    assert "modifierExtension" not in defs.types["Timing.repeat"].elements


def test_choice_types_are_expanded(defs: R4Definitions) -> None:
    patient = defs.types["Patient"].elements
    assert patient["deceasedBoolean"].choice == "deceased"
    assert patient["deceasedDateTime"].type == "dateTime"
    assert "deceased[x]" not in patient
    assert len([n for n in defs.types["Extension"].elements if n.startswith("value")]) == 50
    assert defs.types["MedicationRequest"].required_choices == ("medication",)


def test_content_references(defs: R4Definitions) -> None:
    item = defs.types["Questionnaire.item"].elements["item"]
    assert (item.type, item.array) == ("Questionnaire.item", True)
    assert defs.types["Bundle.entry"].elements["link"].type == "Bundle.link"
    request = defs.types["ExampleScenario.process.step.operation"].elements["request"]
    assert (request.type, request.array) == ("ExampleScenario.instance.containedInstance", False)


def test_resource_typed_elements(defs: R4Definitions) -> None:
    assert defs.types["Bundle.entry"].elements["resource"].type == "Resource"
    assert defs.types["Bundle.entry.response"].elements["outcome"].type == "Resource"
    assert defs.types["Parameters.parameter"].elements["resource"].type == "Resource"


def test_primitives_and_their_extensions(defs: R4Definitions) -> None:
    gender = defs.types["Patient"].elements["gender"]
    assert (gender.primitive, gender.extensible) == (True, True)
    assert gender.value_set == "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert not defs.types["Patient"].elements["id"].extensible
    assert not defs.types["Extension"].elements["url"].extensible
    assert not defs.types["Narrative"].elements["div"].extensible
    assert defs.primitives["positiveInt"].json == "integer"
    assert defs.primitives["decimal"].json == "number"
    assert defs.primitives["boolean"].json == "boolean"
    assert defs.primitives["uuid"].regex is not None


def test_required_elements(defs: R4Definitions) -> None:
    observation = defs.types["Observation"].elements
    assert observation["status"].required
    assert observation["code"].required
    assert not observation["subject"].required
    assert defs.types["Extension"].elements["url"].required


def test_medplum_additions_are_not_r4(defs: R4Definitions) -> None:
    assert not {"project", "account", "author", "compartment"} & set(defs.types["Meta"].elements)
    assert "url" not in defs.types["Binary"].elements
    assert "studyDesign" not in defs.types["ResearchStudy"].elements
    status = defs.types["ResearchStudy"].elements["status"]
    assert status.value_set == "http://hl7.org/fhir/ValueSet/research-study-status"
    characteristic = defs.types["EvidenceVariable.characteristic"].elements
    assert "definitionByCombination" not in characteristic
    assert "participantEffectivePeriod" in characteristic


def test_specialised_quantities_have_quantity_elements(defs: R4Definitions) -> None:
    for name in ("Age", "Count", "Distance", "Duration"):
        assert {"value", "comparator", "unit", "system", "code"} <= set(defs.types[name].elements)
