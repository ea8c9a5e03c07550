"""Errors of the card API as RFC 9457 problem details, one stable ``type`` URI per error.

Every failure raises :class:`CardProblem`; the blueprint renders it as
``application/problem+json``. The ``type`` URIs are part of the API contract
(docs/card.md): clients branch on them, never on the human-readable ``detail``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BASE = "https://hie.mianyang.gov.cn/problems/card/"


@dataclass(frozen=True, slots=True)
class Kind:
    slug: str
    status: int
    title: str

    @property
    def type(self) -> str:
        return BASE + self.slug


# Requests
BAD_REQUEST = Kind("bad-request", 400, "The request body is not valid")
INVALID_CARD_NUMBER = Kind("invalid-card-number", 400, "The card number is not valid")
INVALID_RESIDENT_ID = Kind("invalid-resident-id", 422, "The resident ID number is not valid")
DEMOGRAPHICS_MISMATCH = Kind(
    "demographics-mismatch", 422, "Birth date or gender disagrees with the resident ID number"
)
# Authentication and scopes
UNAUTHORIZED = Kind("unauthorized", 401, "A valid bearer token is required")
FORBIDDEN = Kind("insufficient-scope", 403, "The token lacks the scope for this operation")
NO_ORGANIZATION = Kind("no-organization", 403, "The token does not name an organisation")
# Cards
CARD_NOT_FOUND = Kind("card-not-found", 404, "No such card")
ALREADY_HOLDS_CARD = Kind("card-already-issued", 409, "The resident already holds a card")
INVALID_TRANSITION = Kind("invalid-transition", 409, "The card cannot make this change")
CARD_LOST = Kind("card-lost", 403, "The card has been reported lost")
CARD_REPLACED = Kind("card-replaced", 403, "The card has been replaced by a new card")
CARD_CANCELLED = Kind("card-cancelled", 403, "The card has been cancelled")
CARD_FROZEN = Kind("card-frozen", 403, "The card is frozen")
# QR tokens
QR_EXPIRED = Kind("qr-expired", 401, "The QR token has expired")
QR_REUSED = Kind("qr-reused", 401, "The QR token has already been used")
QR_INVALID = Kind("qr-invalid", 401, "The QR token is forged or malformed")
# Identity backbone
PERSON_NOT_FOUND = Kind("person-not-found", 404, "No card holder with this identifier")
PERSON_CANCELLED = Kind("person-cancelled", 403, "The person's card has been cancelled")
# A resident's consents
CONSENT_NOT_FOUND = Kind("consent-not-found", 404, "The resident has no such Consent")
CONSENT_NOT_ACTIVE = Kind("consent-not-active", 409, "The Consent is not in force")
# Anything else
NOT_FOUND = Kind("not-found", 404, "No such endpoint")
METHOD_NOT_ALLOWED = Kind("method-not-allowed", 405, "Method not allowed")
INTERNAL = Kind("internal-error", 500, "The server could not complete the request")

STATUS_PROBLEMS = {
    "lost": CARD_LOST,
    "replaced": CARD_REPLACED,
    "cancelled": CARD_CANCELLED,
    "frozen": CARD_FROZEN,
}


class CardProblem(Exception):
    def __init__(self, kind: Kind, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.kind.type,
            "title": self.kind.title,
            "status": self.kind.status,
            "detail": self.detail,
        }
        if instance:
            out["instance"] = instance
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out
