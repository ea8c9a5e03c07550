"""The date that places a record in time, for a Consent's ``provision.dataPeriod``.

One date search parameter per type: the clinically meaningful one (when it happened,
was observed, was ordered), not when it was written. A type not listed uses its
``date`` parameter; a record without a value for its parameter is undated: a permit's
dataPeriod does not open it, a deny's covers it (docs/consent.md).
"""

from __future__ import annotations

from collections.abc import Iterable

_SPECIAL = {
    "Condition": "onset-date",
    "MedicationRequest": "authoredon",
    "MedicationStatement": "effective",
    "MedicationAdministration": "effective-time",
    "MedicationDispense": "whenhandedover",
    "ImagingStudy": "started",
    "ServiceRequest": "authored",
    "DeviceRequest": "authored-on",
    "Specimen": "collected",
    "Goal": "start-date",
    "Claim": "created",
    "Media": "created",
    "QuestionnaireResponse": "authored",
    "Communication": "sent",
    "DetectedIssue": "identified",
    "NutritionOrder": "datetime",
}


def clinical_dates(types: Iterable[str]) -> dict[str, str]:
    """The clinical date parameter of each type."""
    return {t: _SPECIAL.get(t, "date") for t in types}
