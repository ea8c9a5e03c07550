"""Consents and grants compiled, for one caller at one moment, into regions.

A region is what one provision permits or denies (``hie.storage.ports.Region``). The
same regions are evaluated here for one resource (:meth:`Rules.covers`) and by the
store as SQL for searches (``Visibility``), so a read and a search always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from hie.consent.policy import ConsentPolicy
from hie.consent.provisions import ConsentRecord, Provision
from hie.storage.ports import Code, Criteria, PatientRegion, Region


@dataclass(frozen=True, slots=True)
class CardGrant:
    """Made when a resident's card is checked in at an organisation (the card service)."""

    patient: str  # Patient id
    organization: str  # Organization/x
    start: datetime
    end: datetime
    source: str = "card-grant"


@dataclass(frozen=True, slots=True)
class Caller:
    """What the rules need to know of the caller."""

    # The organisation, the actor and, for a clinician, the Practitioner and
    # PractitionerRole, as references (a provision's actor names one of them).
    refs: frozenset[str]
    organization: str
    purpose: str
    platform: bool


@dataclass(frozen=True, slots=True)
class ResourceFacts:
    """What a decision looks at in one resource."""

    type: str
    patients: frozenset[str]  # the patients whose compartment it is in
    labels: frozenset[Code]
    codes: frozenset[Code]
    id: str = ""
    dates: frozenset[tuple[int, int]] = frozenset()  # its clinical date's (low, high) rows
    refs: frozenset[str] = frozenset()  # "Type/id" of every resource it refers to
    custodian: str | None = None  # the Organization that wrote it; None: derived


@dataclass(frozen=True, slots=True)
class Rule:
    permit: bool
    patient: str
    region: Region
    source: str  # "Consent/1.provision.provision[0]", "card-grant"


def meets(facts: ResourceFacts, c: Criteria) -> bool:
    if c.types is not None and facts.type not in c.types:
        return False
    if c.labels is not None and not (facts.labels & c.labels):
        return False
    if c.codes is not None and not (facts.codes & c.codes):
        return False
    if c.data_period is not None:
        start, end = c.data_period
        if not facts.dates:
            if not c.undated:
                return False
        elif not any(start <= low and high <= end for low, high in facts.dates):
            return False
    if c.custodians is not None:
        if facts.custodian is None:
            if not c.undated:
                return False
        elif facts.custodian not in c.custodians:
            return False
    if c.data is not None:
        return any(
            (t, i) == (facts.type, facts.id)
            or (meaning == "dependents" and f"{t}/{i}" in facts.refs)
            for t, i, meaning in c.data
        )
    return True


@dataclass(frozen=True, slots=True)
class Rules:
    rules: tuple[Rule, ...]
    sensitive_labels: frozenset[Code]
    sensitive_codes: frozenset[Code]

    def covers(self, facts: ResourceFacts) -> tuple[bool, str]:
        """Whether the rules permit ``facts``, and the deciding rule."""
        reason = "no consent or grant covers it"
        permitted = None
        for rule in self.rules:
            if rule.patient not in facts.patients:
                continue
            region = rule.region
            if not all(meets(facts, c) for c in region.criteria):
                continue
            if any(meets(facts, e) for e in region.exceptions):
                continue
            if not rule.permit:
                return False, f"deny: {rule.source}"
            unnamed = (facts.labels & self.sensitive_labels) | (facts.codes & self.sensitive_codes)
            unnamed -= region.names
            if unnamed:
                codes = ", ".join(sorted(c for _, c in unnamed))
                reason = f"sensitive ({codes}) and not named by {rule.source}"
            elif permitted is None:
                permitted = rule.source
        if permitted is not None:
            return True, f"permit: {permitted}"
        return False, reason

    def regions(self) -> tuple[tuple[PatientRegion, ...], tuple[PatientRegion, ...]]:
        """Permit and deny regions grouped by shape (many patients share one)."""
        groups: dict[tuple[bool, Region], set[str]] = {}
        for rule in self.rules:
            groups.setdefault((rule.permit, rule.region), set()).add(rule.patient)
        permits = tuple(PatientRegion(frozenset(p), r) for (ok, r), p in groups.items() if ok)
        denies = tuple(PatientRegion(frozenset(p), r) for (ok, r), p in groups.items() if not ok)
        return permits, denies


def compile_rules(
    policy: ConsentPolicy,
    caller: Caller,
    now: datetime,
    consents: Iterable[ConsentRecord],
    grants: Iterable[CardGrant],
) -> Rules:
    rules: list[Rule] = []
    for consent in consents:
        _walk(consent.patient, consent.root, (), frozenset(), caller, now, False, rules)
    if not caller.platform and caller.purpose in policy.treatment_purposes:
        for g in grants:
            if g.organization == caller.organization and g.start <= now <= g.end:
                rules.append(Rule(True, g.patient, Region(), g.source))
    return Rules(tuple(rules), policy.sensitive_labels, policy.sensitive_codes)


def _walk(
    patient: str,
    p: Provision,
    criteria: tuple[Criteria, ...],
    names: frozenset[Code],
    caller: Caller,
    now: datetime,
    named: bool,
    out: list[Rule],
) -> None:
    if not p.applies_to(caller.refs, caller.purpose, now):
        return
    criteria = (*criteria, p.criteria) if p.criteria != Criteria() else criteria
    names = names | (p.criteria.labels or frozenset()) | (p.criteria.codes or frozenset())
    # A platform's permit must name its organisation and a purpose on the way down.
    named = named or (p.actors is not None and p.purposes is not None)
    exceptions = tuple(
        c.criteria for c in p.children if c.applies_to(caller.refs, caller.purpose, now)
    )
    if p.type == "deny" or not caller.platform or named:
        region = Region(criteria, exceptions, names if p.type == "permit" else frozenset())
        out.append(Rule(p.type == "permit", patient, region, p.path))
    for child in p.children:
        _walk(patient, child, criteria, names, caller, now, named, out)
