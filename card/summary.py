"""What a reader may see of a resident's shared record when it identifies the card.

``POST /identify {..., "summary": true}`` adds active allergies, conditions and
medications. They are read through the exchange *as the reader* (its organisation, its
purpose, its scopes), so the consent decision point filters them exactly as it filters
the reader's FHIR searches: the reader's own records, and others' only where a Consent
or a card-presented grant covers them. Each search is audited like any other, and shows
in the resident's access log.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from card import problems
from card.problems import CardProblem
from hie.context import Interaction, RequestContext
from hie.exchange import Exchange

# (section, resource type, status parameter and value)
SECTIONS = (
    ("allergies", "AllergyIntolerance", ("clinical-status", "active")),
    ("conditions", "Condition", ("clinical-status", "active")),
    ("medications", "MedicationRequest", ("status", "active")),
    ("medications", "MedicationStatement", ("status", "active")),
)
_MAX = 50  # per type: a summary, not an export


def summary_allowed(ctx: RequestContext) -> None:
    """The reader's token must allow searching every summary type (clinical scopes)."""
    missing = [t for _, t, _ in SECTIONS if not ctx.scopes.allows(Interaction.SEARCH, t)]
    if missing:
        raise CardProblem(
            problems.FORBIDDEN,
            "a summary needs search scopes for " + ", ".join(missing),
            missing=missing,
        )


def _item(resource_type: str, resource: dict[str, Any], custodian: str | None) -> dict[str, Any]:
    concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    codings = [c for c in concept.get("coding") or () if isinstance(c, dict)]
    text = concept.get("text") or next((c["display"] for c in codings if c.get("display")), None)
    out: dict[str, Any] = {"resource": f"{resource_type}/{resource.get('id')}"}
    if text:
        out["text"] = text
    out["codes"] = [f"{c.get('system', '')}|{c['code']}" for c in codings if "code" in c]
    if custodian:
        out["custodian"] = custodian
    return out


def shared_summary(
    exchange: Exchange, ctx: RequestContext, patients: Collection[str]
) -> dict[str, list[dict[str, Any]]]:
    """Active allergies, conditions and medications of ``patients`` (the person's
    Patient ids) that ``ctx`` may see."""
    refs = ",".join(f"Patient/{p}" for p in sorted(patients))
    out: dict[str, list[dict[str, Any]]] = {"allergies": [], "conditions": [], "medications": []}
    for section, resource_type, status in SECTIONS:
        params = [("patient", refs), status, ("_count", str(_MAX))]
        result = exchange.search(ctx, resource_type, params)
        out[section] += [
            _item(resource_type, orjson.loads(s.content), s.custodian) for s in result.entries
        ]
    return out
