"""The FHIRPath subset: parsing, static typing of choice elements, evaluation."""

from __future__ import annotations

import pytest

from hie.search.definitions import SearchRegistry
from hie.search.fhirpath import (
    ElementTypes,
    Unsupported,
    compile_branches,
    getter,
    parse,
    reference_type,
    union_parts,
)


@pytest.fixture(scope="module")
def types(registry: SearchRegistry) -> ElementTypes:
    return ElementTypes(registry.element_types)


def test_choice_elements_expand(types: ElementTypes) -> None:
    branches = compile_branches(parse("Observation.effective"), "Observation", types)
    assert {(b.steps, b.type) for b in branches} == {
        ((("key", "effectiveDateTime"),), "dateTime"),
        ((("key", "effectivePeriod"),), "Period"),
        ((("key", "effectiveTiming"),), "Timing"),
        ((("key", "effectiveInstant"),), "instant"),
    }


def test_as_filters_branches(types: ElementTypes) -> None:
    for text in ("(Observation.value as Quantity)", "Observation.value.as(Quantity)"):
        (b,) = compile_branches(parse(text), "Observation", types)
        assert b.steps == (("key", "valueQuantity"),)


def test_union_keeps_only_own_type(types: ElementTypes) -> None:
    expr = "Condition.code | Observation.code"
    with pytest.raises(Unsupported):
        compile_branches(parse(expr), "Observation", types)
    assert union_parts("(A.x as T) | B.y.where(system='a|b')") == [
        "(A.x as T)",
        "B.y.where(system='a|b')",
    ]


def test_where_and_index(types: ElementTypes) -> None:
    (b,) = compile_branches(parse("Patient.telecom.where(system='phone')"), "Patient", types)
    assert b.type == "ContactPoint"
    get = getter(b.steps)
    resource = {"telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "2"}]}
    assert get(resource) == [{"system": "phone", "value": "1"}]
    (b,) = compile_branches(parse("Bundle.entry[0].resource"), "Bundle", types)
    assert getter(b.steps)({"entry": [{"resource": {"id": "a"}}, {"resource": {"id": "b"}}]}) == [
        {"id": "a"}
    ]


def test_resolve_is(types: ElementTypes) -> None:
    (b,) = compile_branches(
        parse("Observation.subject.where(resolve() is Patient)"), "Observation", types
    )
    get = getter(b.steps)
    assert get({"subject": {"reference": "Patient/1"}}) == [{"reference": "Patient/1"}]
    assert get({"subject": {"reference": "Group/1"}}) == []
    assert reference_type({"reference": "http://x/fhir/Patient/1/_history/2"}) == "Patient"
    assert reference_type({"identifier": {"value": "1"}, "type": "Patient"}) == "Patient"
    assert reference_type({"reference": "urn:uuid:1"}) is None


def test_backbone_and_content_reference(types: ElementTypes) -> None:
    (b,) = compile_branches(parse("Observation.component.code"), "Observation", types)
    assert b.type == "CodeableConcept"
    # Questionnaire.item.item is a contentReference back to Questionnaire.item.
    table = {
        "Questionnaire.item": ["@Questionnaire.item"],
        "Questionnaire.item.item": ["@Questionnaire.item"],
        "Questionnaire.item.code": ["Coding"],
    }
    expr = parse("Questionnaire.item.item.code")
    (b,) = compile_branches(expr, "Questionnaire", ElementTypes(table))
    assert b.type == "Coding"
    assert b.steps == (("key", "item"), ("key", "item"), ("key", "code"))


def test_extension_function(types: ElementTypes) -> None:
    (b,) = compile_branches(parse("Patient.extension('http://example.org/x')"), "Patient", types)
    get = getter(b.steps)
    assert get({"extension": [{"url": "http://example.org/x", "valueString": "a"}]}) == [
        {"url": "http://example.org/x", "valueString": "a"}
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Patient.deceased.exists() and Patient.deceased != false",
        "%resource.x",
        "Patient.name.first()",
        "Patient.name.where(use.exists())",
        "Patient.name[",
    ],
)
def test_outside_the_subset(types: ElementTypes, text: str) -> None:
    with pytest.raises(Unsupported):
        compile_branches(parse(text), "Patient", types)


def test_system_types_in_as_match_their_fhir_types() -> None:
    from hie.search import default_registry
    from hie.search.fhirpath import ElementTypes, compile_branches, parse

    types = ElementTypes(default_registry().element_types)
    branches = compile_branches(
        parse("value.as(DateTime) | value.as(Period)"), "Observation", types, "Observation"
    )
    assert {b.type for b in branches} == {"dateTime", "Period"}
