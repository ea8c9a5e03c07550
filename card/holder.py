"""A card holder's details as sent to ``POST /cards`` and in import files, checked.

Birth date and sex must agree with the resident ID number (422 otherwise); gender accepts
FHIR codes and the usual Chinese and registry spellings.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Any

from card import problems, resident_id
from card.problems import CardProblem

_GENDERS = {
    "male": "male",
    "m": "male",
    "1": "male",
    "男": "male",
    "female": "female",
    "f": "female",
    "2": "female",
    "女": "female",
}


@dataclass(frozen=True, slots=True)
class Holder:
    resident_id: str  # normalised 18 characters
    name: str
    gender: str
    birth_date: str  # YYYY-MM-DD
    phone: str | None
    address: str | None


def clean_name(value: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", value).split())


def _text(body: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise CardProblem(problems.BAD_REQUEST, f"'{field}' is required")
        return None
    if not isinstance(value, str):
        raise CardProblem(problems.BAD_REQUEST, f"'{field}' must be a string")
    return value.strip() or None


def parse_resident_id(value: object, today: dt.date) -> resident_id.ResidentId:
    if not isinstance(value, str):
        raise CardProblem(problems.BAD_REQUEST, "'resident_id' must be a string")
    try:
        return resident_id.parse(value, today=today)
    except resident_id.ResidentIdError as exc:
        raise CardProblem(
            problems.INVALID_RESIDENT_ID, exc.message, problem=str(exc.problem)
        ) from None


def parse_holder(body: Any, today: dt.date) -> Holder:
    if not isinstance(body, dict):
        raise CardProblem(problems.BAD_REQUEST, "the body must be a JSON object")
    rid = parse_resident_id(body.get("resident_id"), today)
    name = clean_name(_text(body, "name", required=True) or "")
    if not name or len(name) > 64:
        raise CardProblem(problems.BAD_REQUEST, "'name' must hold 1 to 64 characters")
    gender_raw = _text(body, "gender", required=True) or ""
    gender = _GENDERS.get(gender_raw.lower())
    if gender is None:
        raise CardProblem(problems.BAD_REQUEST, f"gender '{gender_raw}' is not male or female")
    birth_raw = _text(body, "birth_date", required=True) or ""
    try:
        birth = dt.date.fromisoformat(birth_raw)
    except ValueError:
        raise CardProblem(
            problems.BAD_REQUEST, f"birth_date '{birth_raw}' is not a date (YYYY-MM-DD)"
        ) from None
    mismatches = []
    if birth != rid.birth_date:
        mismatches.append(
            f"birth date {birth.isoformat()} is not the ID number's {rid.birth_date.isoformat()}"
        )
    if gender != rid.sex.value:
        mismatches.append(f"gender {gender} is not the ID number's {rid.sex.value}")
    if mismatches:
        raise CardProblem(problems.DEMOGRAPHICS_MISMATCH, "; ".join(mismatches))
    return Holder(
        resident_id=rid.number,
        name=name,
        gender=gender,
        birth_date=birth.isoformat(),
        phone=_text(body, "phone", required=False),
        address=_text(body, "address", required=False),
    )
