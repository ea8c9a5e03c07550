from __future__ import annotations

from pathlib import Path

import pytest

from hie.fhir.validation import Validator, load_validator


@pytest.fixture(scope="session")
def validator() -> Validator:
    return load_validator()


@pytest.fixture(scope="session")
def fhir_fixtures() -> Path:
    return Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
