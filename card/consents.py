"""A resident's own consent, recorded through the card: the request body as a FHIR R4
Consent (scope patient-privacy) and a stored Consent as the plain view the card API shows.

The body (docs/card.md) is deliberately small: one provision, permit or deny, naming
who (organisations, practitioners, roles), why (purposes), what (resource types,
security labels) and when (the consent's period, the data's period). Anything richer is
recorded by an authorised recorder through FHIR.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import date, datetime
from typing import Any

from card import problems
from card.problems import CardProblem

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
LABEL_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# Marks the Consents residents recorded with their card (the card API lists every one).
SOURCE_TAG = {"system": "urn:hie:consent-source", "code": "card"}
ACTIONS = ("permit", "deny")
_ACTOR = re.compile(r"^(Organization|Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")
_CODE = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")
_CONSENT_REF = re.compile(r"^Consent/([A-Za-z0-9\-.]{1,64})$")
_RECORD_KEYS = frozenset(
    {"qr", "action", "actor", "purpose", "class", "securityLabel", "period", "dataPeriod"}
)


def _bad(detail: str) -> CardProblem:
    return CardProblem(problems.BAD_REQUEST, detail)


def _strings(body: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _bad(f"'{key}' must be a string or a non-empty list of strings")
    for item in value:
        if not isinstance(item, str) or not pattern.match(item):
            raise _bad(f"'{key}': {item!r} is not valid")
    return list(dict.fromkeys(value))


def _day_or_time(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a date (YYYY-MM-DD) or a date-time with a zone")
    try:
        if len(value) == 10:
            date.fromisoformat(value)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError("no time zone")
    except ValueError as exc:
        raise _bad(f"'{key}': {value!r} is not a date or date-time ({exc})") from None
    return value


def _period(body: Mapping[str, Any], key: str) -> dict[str, str] | None:
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw or set(raw) - {"start", "end"}:
        raise _bad(f"'{key}' must be an object with 'start' and/or 'end'")
    out = {k: _day_or_time(v, f"{key}.{k}") for k, v in raw.items()}
    if "start" in out and "end" in out and out["end"][:10] < out["start"][:10]:
        raise _bad(f"'{key}' ends before it starts")
    return out


def consent_body(
    body: Mapping[str, Any], *, patient: str, now: datetime, types: Collection[str]
) -> dict[str, Any]:
    """The FHIR Consent for a record request; a ``bad-request`` problem if malformed."""
    unknown = set(body) - _RECORD_KEYS
    if unknown:
        raise _bad(f"unknown fields {sorted(unknown)}")
    action = body.get("action")
    if action not in ACTIONS:
        raise _bad("'action' must be 'permit' or 'deny'")
    provision: dict[str, Any] = {"type": action}
    if period := _period(body, "period"):
        provision["period"] = period
    actors = _strings(body, "actor", _ACTOR)
    if actors:
        role = {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]}
        provision["actor"] = [{"role": role, "reference": {"reference": a}} for a in actors]
    if purposes := _strings(body, "purpose", _CODE):
        provision["purpose"] = [{"system": PURPOSE_SYSTEM, "code": p} for p in purposes]
    classes = _strings(body, "class", _CODE)
    for name in classes:
        if name not in types:
            raise _bad(f"'class': {name!r} is not a resource type served here")
    if classes:
        provision["class"] = [{"system": RESOURCE_TYPES, "code": c} for c in classes]
    if labels := _strings(body, "securityLabel", _CODE):
        provision["securityLabel"] = [{"system": LABEL_SYSTEM, "code": c} for c in labels]
    if data_period := _period(body, "dataPeriod"):
        provision["dataPeriod"] = data_period
    policy = "OPTIN" if action == "permit" else "OPTOUT"
    return {
        "resourceType": "Consent",
        "meta": {"tag": [SOURCE_TAG]},
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": patient},
        "dateTime": now.isoformat(),
        "performer": [{"reference": patient}],
        "policyRule": {"coding": [{"system": LABEL_SYSTEM, "code": policy}]},
        # The resident proved presence with a fresh QR token of their card.
        "verification": [
            {
                "verified": True,
                "verifiedWith": {"reference": patient},
                "verificationDate": now.isoformat(),
            }
        ],
        "provision": provision,
    }


def consent_id(value: Any) -> str:
    if not isinstance(value, str) or not (match := _CONSENT_REF.match(value)):
        raise _bad("'withdraw' must be a reference Consent/ID")
    return match.group(1)


def _codes(items: Any) -> list[str]:
    return [str(c["code"]) for c in items or () if isinstance(c, dict) and "code" in c]


def consent_view(resource: Mapping[str, Any], version: int) -> dict[str, Any]:
    """What the card API shows of a Consent: its top provision, in the body's own terms."""
    provision = resource.get("provision")
    p: Mapping[str, Any] = provision if isinstance(provision, dict) else {}
    out: dict[str, Any] = {
        "consent": f"Consent/{resource.get('id')}",
        "version": version,
        "status": resource.get("status"),
        "recorded": resource.get("dateTime"),
        "by_card": SOURCE_TAG in (resource.get("meta") or {}).get("tag", []),
        "action": p.get("type", "deny"),
    }
    actors = [
        a["reference"]["reference"]
        for a in p.get("actor") or ()
        if isinstance(a, dict) and isinstance(a.get("reference"), dict)
    ]
    views = (
        ("actor", actors),
        ("purpose", _codes(p.get("purpose"))),
        ("class", _codes(p.get("class"))),
        ("securityLabel", _codes(p.get("securityLabel"))),
    )
    out.update({k: v for k, v in views if v})
    for key in ("period", "dataPeriod"):
        if isinstance(p.get(key), dict):
            out[key] = p[key]
    if p.get("provision"):
        out["exceptions"] = len(p["provision"])
    return out
