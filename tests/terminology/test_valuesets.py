"""terminology.valuesets: the shipped R4 required value sets."""

from __future__ import annotations

import pytest

from terminology.valuesets import ValueSets, load_required_value_sets

GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"


@pytest.fixture(scope="module")
def value_sets() -> ValueSets:
    return load_required_value_sets()


def test_contains(value_sets: ValueSets) -> None:
    assert value_sets.contains(GENDER, "female") is True
    assert value_sets.contains(GENDER, "mail") is False
    assert value_sets.contains(GENDER + "|4.0.1", "male") is True
    assert value_sets.contains("http://hl7.org/fhir/ValueSet/observation-status", "done") is False
    assert value_sets.contains("http://example.org/unknown", "x") is None


def test_codes(value_sets: ValueSets) -> None:
    assert value_sets.codes(GENDER) == {"male", "female", "other", "unknown"}
    status = value_sets.codes("http://hl7.org/fhir/ValueSet/encounter-status")
    assert status is not None
    assert {"planned", "in-progress", "finished", "entered-in-error"} <= status


def test_nested_code_system_concepts_are_expanded(value_sets: ValueSets) -> None:
    # The questionnaire item types nest boolean, decimal, ... under question.
    item_types = value_sets.codes("http://hl7.org/fhir/ValueSet/item-type")
    assert item_types is not None
    assert {"group", "display", "question", "boolean", "choice", "open-choice"} <= item_types


def test_unexpandable_value_sets_are_not_enforced(value_sets: ValueSets) -> None:
    mime = "http://hl7.org/fhir/ValueSet/mimetypes"
    assert value_sets.contains(mime, "text/plain") is None
    assert value_sets.codes(mime) is None
    reason = value_sets.why_unenforceable(mime)
    assert reason is not None
    assert "urn:ietf:bcp:13" in reason
    assert value_sets.why_unenforceable(GENDER) is None
    assert mime in value_sets.urls()
    assert GENDER in value_sets.urls()


def test_from_json() -> None:
    document = {
        "valueSets": {
            "http://x/vs": {"codes": ["a", "b"]},
            "http://x/ext": {"enforceable": False, "reason": "external"},
        }
    }
    value_sets = ValueSets.from_json(document)
    assert value_sets.contains("http://x/vs", "a") is True
    assert value_sets.contains("http://x/vs", "c") is False
    assert value_sets.contains("http://x/ext", "a") is None
    assert value_sets.why_unenforceable("http://x/ext") == "external"
