"""The Synthea test set (tests/fixtures/fhir): real R4 that must validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hie.errors import InvalidResource
from hie.fhir.validation import Validator

BAD_BUNDLE = "uscore_bundle_patient_355.json"
BAD_ENTRY = 266


def _bundles(fixtures: Path) -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text("utf-8"))
        for path in sorted((fixtures / "synthea-bundles").glob("*.json"))
    }


def test_every_bundle_entry_validates_except_the_known_bad_one(
    validator: Validator, fhir_fixtures: Path
) -> None:
    bundles = _bundles(fhir_fixtures)
    assert len(bundles) == 14
    failures = {}
    checked = 0
    for name, bundle in bundles.items():
        for index, entry in enumerate(bundle["entry"]):
            checked += 1
            issues = validator.validate(entry["resource"])
            if issues:
                failures[(name, index)] = issues
    assert checked > 4800
    assert list(failures) == [(BAD_BUNDLE, BAD_ENTRY)]
    [issue] = failures[(BAD_BUNDLE, BAD_ENTRY)]
    assert issue.expression == ("Observation.effectivePeriod.stop",)
    assert issue.code == "structure"
    assert "stop" in issue.diagnostics


def test_the_bad_entry_fails_check_with_a_400(validator: Validator, fhir_fixtures: Path) -> None:
    bundle = _bundles(fhir_fixtures)[BAD_BUNDLE]
    with pytest.raises(InvalidResource) as caught:
        validator.check(bundle["entry"][BAD_ENTRY]["resource"])
    assert caught.value.status == 400
    assert [i.expression for i in caught.value.all_issues()] == [
        ("Observation.effectivePeriod.stop",)
    ]
    outcome = caught.value.outcome()
    assert outcome["issue"][0]["expression"] == ["Observation.effectivePeriod.stop"]


def test_whole_bundles_validate_with_entry_paths(validator: Validator, fhir_fixtures: Path) -> None:
    for name, bundle in _bundles(fhir_fixtures).items():
        issues = validator.validate(bundle)
        if name == BAD_BUNDLE:
            assert [i.expression for i in issues] == [
                (f"Bundle.entry[{BAD_ENTRY}].resource.effectivePeriod.stop",)
            ]
        else:
            assert issues == [], name


def test_every_ndjson_resource_validates(validator: Validator, fhir_fixtures: Path) -> None:
    count = 0
    for path in sorted((fhir_fixtures / "synthea-ndjson").glob("*.ndjson")):
        for line in path.read_text("utf-8").splitlines():
            resource = json.loads(line)
            assert validator.validate(resource) == [], (path.name, resource.get("id"))
            count += 1
    assert count == 929
