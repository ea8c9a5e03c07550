"""Mangled resources give issues, never exceptions."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hie.errors import Issue
from hie.fhir.validation import Validator, load_validator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir" / "synthea-bundles"
_BUNDLE = json.loads((FIXTURES / "uscore_bundle_patient_85.json").read_text("utf-8"))
# One of each resource type in the bundle.
SAMPLES = list({e["resource"]["resourceType"]: e["resource"] for e in _BUNDLE["entry"]}.values())
VALIDATOR: Validator = load_validator()
WHOLE: Validator = load_validator(by_parts=False)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["Patient", "Citation", "final", "2020-01-01", "urn:uuid:x", ""]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["resourceType", "id", "url", "value", "_value", "extension", "x", ""])
            | st.text(max_size=6),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, (*prefix, index)))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node[path[0]] = _replace(node[path[0]], path[1:], value)
    return node


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(SAMPLES),
    choice=st.integers(min_value=0),
    value=json_values,
    rename=st.booleans(),
)
def test_mangled_resources_give_issues_not_exceptions(
    sample: dict[str, Any], choice: int, value: Any, rename: bool
) -> None:
    resource = copy.deepcopy(sample)
    paths = _paths(resource)
    path = paths[choice % len(paths)]
    if rename and path and isinstance(path[-1], str):
        parent = resource
        for part in path[:-1]:
            parent = parent[part]
        parent[f"{path[-1]}X"] = parent.pop(path[-1])
    else:
        resource = _replace(resource, path, value)
    issues = VALIDATOR.validate(resource)
    assert all(isinstance(i, Issue) and i.code for i in issues)
    # Remembering valid element values never changes a verdict or an issue.
    assert issues == WHOLE.validate(resource)
    assert VALIDATOR.validate(resource) == issues


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_arbitrary_json_gives_issues_not_exceptions(value: Any) -> None:
    for resource in (
        value,
        {"resourceType": "Patient", "name": value},
        {"resourceType": "Bundle", "entry": value},
    ):
        issues = VALIDATOR.validate(resource)
        assert all(isinstance(i, Issue) for i in issues)


def test_remembered_elements_judge_like_whole_resources() -> None:
    """Valid resources pass either way; a remembered valid element does not hide a bad
    sibling, and a bad value in a once-valid element is still found."""
    for sample in SAMPLES:
        assert VALIDATOR.validate(sample) == WHOLE.validate(sample) == []
        assert VALIDATOR.validate(sample) == []  # now from the remembered elements
    observation = next(s for s in SAMPLES if s["resourceType"] == "Observation")
    bad_date = dict(copy.deepcopy(observation), effectiveDateTime="2020-13-45")
    bad_code = copy.deepcopy(observation)
    bad_code["code"]["coding"][0]["system"] = 42
    bad_nested = copy.deepcopy(observation)
    bad_nested["code"]["coding"].append(None)
    for bad in (bad_date, bad_code, bad_nested):
        issues = VALIDATOR.validate(bad)
        assert issues, bad
        assert issues == WHOLE.validate(bad)
