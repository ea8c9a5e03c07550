"""FHIR R4 Consent resources (scope ``patient-privacy``) read into provision trees.

A provision applies to an access when everything it states holds: the actor, the
purpose and the period (known from the caller and the clock), and the class, code and
security label (known from the resource). Nested provisions are exceptions to their
parent: they apply within the parent's conditions, and a nested provision without a
type takes the opposite of its parent's.

``actor.role`` says how an actor takes part. An author, custodian or informant role
(:data:`SOURCE_ROLES`) makes the actor a condition on the data: records whose custodian
is that Organization. Any other role (``IRCP``, ``PRCP``, ...) names who receives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from hie.search.dates import DATE_MAX, DATE_MIN
from hie.storage.ports import Code, Criteria

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_SIGNER = "http://terminology.hl7.org/CodeSystem/contractsignertypecodes"
_PROVENANCE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"

# Roles (R4 binding security-role-type, extensible) that make the actor the data's source.
SOURCE_ROLES: frozenset[Code] = frozenset(
    {
        (_PARTICIPATION, "AUT"),
        (_PARTICIPATION, "CST"),
        (_PARTICIPATION, "INF"),
        (_SIGNER, "PRIMAUTH"),
        (_SIGNER, "COAUTH"),
        (_SIGNER, "SOURCE"),
        (_PROVENANCE, "author"),
        (_PROVENANCE, "custodian"),
        (_PROVENANCE, "informant"),
    }
)


@dataclass(frozen=True, slots=True)
class Provision:
    type: str  # "permit" | "deny"
    path: str  # where it sits in the Consent, for the deciding rule
    actors: frozenset[str] | None  # references; None: any actor
    purposes: frozenset[str] | None  # purpose-of-use codes; None: any purpose
    start: datetime | None
    end: datetime | None
    criteria: Criteria
    children: tuple[Provision, ...] = ()

    def applies_to(self, refs: frozenset[str], purpose: str, now: datetime) -> bool:
        if self.actors is not None and not (self.actors & refs):
            return False
        if self.purposes is not None and purpose not in self.purposes:
            return False
        if self.start is not None and now < self.start:
            return False
        return self.end is None or now <= self.end


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    id: str
    patient: str  # Patient id
    root: Provision


def _when(value: Any, *, end: bool) -> datetime | None:
    """A FHIR date or dateTime as a UTC instant (a date covers its whole day)."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) <= 10:
            parts = [int(p) for p in value.split("-")]
            day = date(parts[0], parts[1] if len(parts) > 1 else (12 if end else 1), 1)
            if len(parts) > 2:
                day = day.replace(day=parts[2])
            elif end:  # the last day of a year or month
                nxt = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
                day = date.fromordinal(nxt.toordinal() - 1)
            return datetime.combine(day, time.max if end else time.min, UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _codings(items: Any) -> list[Mapping[str, Any]]:
    return [c for c in items or () if isinstance(c, Mapping)]


def _concept_codings(items: Any) -> list[Mapping[str, Any]]:
    return [c for cc in _codings(items) for c in _codings(cc.get("coding"))]


def _code_set(codings: list[Mapping[str, Any]]) -> frozenset[Code] | None:
    out = {(c["system"], c["code"]) for c in codings if "system" in c and "code" in c}
    return frozenset(out) if codings else None


def _us(moment: datetime | None, default: int) -> int:
    return default if moment is None else int(moment.timestamp() * 1_000_000)


def _data_period(raw: Any) -> tuple[int, int] | None:
    if not isinstance(raw, Mapping):
        return None
    start = _us(_when(raw.get("start"), end=False), DATE_MIN)
    end = _us(_when(raw.get("end"), end=True), DATE_MAX)
    return (start, end)


# data.meaning: instance (the resource), dependents (resources that refer to it) are
# interpreted exactly; related (and what it refers to) and authoredby (what it authored)
# would need other resources' contents, so they are narrowed safely: a permit covers
# the instance only, a deny ignores the data condition (denies every resource it would
# otherwise cover).
_EXACT = frozenset({"instance", "dependents"})


def _data(raw: Any, kind: str) -> frozenset[tuple[str, str, str]] | None:
    items = _codings(raw)
    if not items:
        return None
    out: set[tuple[str, str, str]] = set()
    for item in items:
        ref = item.get("reference")
        target = ref.get("reference") if isinstance(ref, Mapping) else None
        rtype, _, rid = target.partition("/") if isinstance(target, str) else ("", "", "")
        meaning = item.get("meaning")
        if meaning not in _EXACT:
            if kind == "deny":
                return None
            meaning = "instance"
        if rtype and rid:
            out.add((rtype, rid, str(meaning)))
    return frozenset(out)


def _actors(raw: Any) -> tuple[frozenset[str] | None, list[str] | None]:
    """The recipients (None: anyone) and the sources named by a provision's actors.

    An actor without a usable reference still counts, as naming nobody: a provision
    must never widen because an actor could not be read."""
    items = _codings(raw)
    recipients: set[str] = set()
    sources: list[str] = []
    any_recipient = False
    for a in items:
        ref = a.get("reference")
        target = ref.get("reference") if isinstance(ref, Mapping) else None
        roles = {(c.get("system"), c.get("code")) for c in _concept_codings([a.get("role")])}
        if roles & SOURCE_ROLES:
            sources.append(target if isinstance(target, str) else "")
            continue
        any_recipient = True
        if isinstance(target, str):
            recipients.add(target)
    return (frozenset(recipients) if any_recipient else None), (sources or None)


def _custodians(sources: list[str] | None, kind: str) -> frozenset[str] | None:
    """Source actors as a condition on the record's custodian (an Organization).

    The exchange knows each record's custodian, not its individual author: a source
    that is not an Organization narrows a permit to nothing it can show, and drops the
    condition from a deny (which then covers all else it names): never less protection."""
    if sources is None:
        return None
    orgs = {s for s in sources if s.startswith("Organization/")}
    if len(orgs) < len(sources) and kind == "deny":
        return None
    return frozenset(orgs)


def _provision(raw: Mapping[str, Any], parent: str | None, path: str) -> Provision:
    kind = raw.get("type")
    if kind not in ("permit", "deny"):
        kind = "deny" if parent in (None, "permit") else "permit"
    recipients, sources = _actors(raw.get("actor"))
    purposes = {c["code"] for c in _codings(raw.get("purpose")) if isinstance(c.get("code"), str)}
    classes = _codings(raw.get("class"))
    types = frozenset(
        c["code"]
        for c in classes
        if isinstance(c.get("code"), str) and c.get("system", RESOURCE_TYPES) == RESOURCE_TYPES
    )
    period_raw = raw.get("period")
    period: Mapping[str, Any] = period_raw if isinstance(period_raw, Mapping) else {}
    children = tuple(
        _provision(child, kind, f"{path}.provision[{i}]")
        for i, child in enumerate(_codings(raw.get("provision")))
    )
    return Provision(
        type=kind,
        path=path,
        actors=recipients,
        purposes=frozenset(purposes) if raw.get("purpose") else None,
        start=_when(period.get("start"), end=False),
        end=_when(period.get("end"), end=True),
        criteria=Criteria(
            types=types if classes else None,
            labels=_code_set(_codings(raw.get("securityLabel"))),
            codes=_code_set(_concept_codings(raw.get("code"))),
            data_period=_data_period(raw.get("dataPeriod")),
            undated=kind == "deny",
            data=_data(raw.get("data"), kind),
            custodians=_custodians(sources, kind),
        ),
        children=children,
    )


def parse_consent(resource: Mapping[str, Any]) -> ConsentRecord | None:
    """An active patient-privacy Consent as a provision tree; None for any other."""
    if resource.get("resourceType") != "Consent" or resource.get("status") != "active":
        return None
    scope = _concept_codings([resource.get("scope")] if resource.get("scope") else [])
    if not any(c.get("code") == "patient-privacy" for c in scope):
        return None
    patient = resource.get("patient")
    ref = patient.get("reference") if isinstance(patient, Mapping) else None
    if not isinstance(ref, str) or not ref.startswith("Patient/"):
        return None
    raw = resource.get("provision")
    if not isinstance(raw, Mapping):
        return None
    root = _provision(raw, None, f"Consent/{resource.get('id')}.provision")
    return ConsentRecord(str(resource.get("id")), ref.removeprefix("Patient/"), root)
