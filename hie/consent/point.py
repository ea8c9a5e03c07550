"""The consent decision point: who may see which patient's records.

``ConsentPoint`` is built once (policy, compartment definition, card-grant store) and
holds no state between calls: every decision reads the consents and grants in force
now, so a withdrawn Consent stops counting with the next request. The exchange hands
it a :class:`Facts` source over its unit of work.

Order of the rules (docs/consent.md):
1. callers without an organisation are the exchange's own administration: permitted;
2. break-glass (purpose BTG with a stated reason): permitted, and flagged in audit;
3. resources outside the Patient compartment (directories): permitted;
4. the custodian sees its own records;
5. otherwise a Consent permit or a card-presented grant must cover the resource, no
   deny may cover it, and a sensitive resource needs a permit that names it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from hie.consent.clinical_dates import clinical_dates
from hie.consent.decision import Decision
from hie.consent.policy import ConsentPolicy
from hie.consent.provisions import ConsentRecord, parse_consent
from hie.consent.rules import Caller, CardGrant, ResourceFacts, compile_rules
from hie.consent.shapes import SHAPE_PARAM
from hie.context import RequestContext
from hie.search.rows import DateRow, IndexRow, ReferenceRow, TokenRow
from hie.storage.ports import PatientRegion, StoredResource, Visibility


class GrantLike(Protocol):
    @property
    def patient(self) -> str: ...  # Patient/<id>
    @property
    def organization(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


class GrantLookup(Protocol):
    """The card-presented grants (``hie.consent.grants.GrantStore`` fits)."""

    def active(
        self,
        patients: Collection[str],
        organization: str,
        at: datetime,
        purpose: str | None = None,
    ) -> Sequence[GrantLike]: ...

    def granted_patients(
        self, organization: str, at: datetime, purpose: str | None = None
    ) -> set[str]: ...


class Facts(Protocol):
    """Consent resources, read by the exchange in the caller's unit of work."""

    def consents(self, patients: Collection[str]) -> list[Mapping[str, Any]]:
        """Active Consents about any of ``patients`` (ids)."""

    def shapes(self) -> list[tuple[str, Mapping[str, Any]]]:
        """Each consent shape in force, with one Consent of that shape."""

    def holders(self, patients: Collection[str]) -> set[str]:
        """The custodians of these Patient records."""

    def linking(self, patients: Collection[str]) -> set[str]:
        """The Patients (enterprise records) whose ``link`` names one of these."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision that also says whether it was break-glass (audited loudly)."""

    decision: Decision
    break_glass: bool = False


_SHAPE = "\x00shape:"  # a stand-in patient: every patient of a consent shape


def _resolve(group: PatientRegion) -> PatientRegion:
    shapes = {p.removeprefix(_SHAPE) for p in group.patients if p.startswith(_SHAPE)}
    patients = {p for p in group.patients if not p.startswith(_SHAPE)}
    return PatientRegion(frozenset(patients), group.region, frozenset(shapes))


class ConsentPoint:
    def __init__(
        self,
        policy: ConsentPolicy,
        compartment: Mapping[str, tuple[str, ...]],
        grants: GrantLookup | None = None,
    ) -> None:
        self.policy = policy
        self._compartment = dict(compartment)
        self.patient_data = frozenset({"Patient", *compartment})
        self.clinical_dates = clinical_dates(self.patient_data)
        self._grants = grants

    # -- who the caller is -------------------------------------------------------

    def break_glass(self, ctx: RequestContext, now: datetime) -> bool:
        """Purpose BTG with a stated reason, within ``break_glass_ttl`` of the token's
        issue: the grant is time-limited whatever lifetime the token was minted with.
        (Every access token carries its issue time; a context built in-process has none.)"""
        return (
            ctx.organization is not None
            and ctx.purpose == self.policy.break_glass_purpose
            and bool((ctx.reason or "").strip())
            and (
                ctx.issued_at is None
                or now.timestamp() < ctx.issued_at + self.policy.break_glass_ttl
            )
        )

    def sees_everything(self, ctx: RequestContext, now: datetime) -> bool:
        """Administration and break-glass: nothing is hidden from them."""
        return ctx.organization is None or self.break_glass(ctx, now)

    def _caller(self, ctx: RequestContext, organization: str) -> Caller:
        refs = {organization, ctx.actor}
        refs.update(r for r in (ctx.practitioner, ctx.role) if r)
        return Caller(
            refs=frozenset(refs),
            organization=organization,
            purpose=ctx.purpose or self.policy.default_purpose,
            platform=organization in self.policy.platforms,
        )

    def quick(
        self, ctx: RequestContext, resource_type: str, custodian: str | None, now: datetime
    ) -> Verdict | None:
        """A decision that needs no facts, or None (then call :meth:`decide`)."""
        if ctx.organization is None:
            return Verdict(Decision(True, "administrative (no organisation)"))
        if self.break_glass(ctx, now):
            return Verdict(Decision(True, f"break-glass: {ctx.reason}"), break_glass=True)
        if resource_type not in self.patient_data:
            return Verdict(Decision(True, "not patient data"))
        if custodian is not None and custodian == ctx.organization:
            return Verdict(Decision(True, "custodian"))
        return None

    # -- one resource -------------------------------------------------------------

    def facts_of(self, stored: StoredResource, rows: Sequence[IndexRow]) -> ResourceFacts:
        params = set(self._compartment.get(stored.type, ()))
        patients = {
            r.target_id
            for r in rows
            if isinstance(r, ReferenceRow)
            and r.param in params
            and r.target_type == "Patient"
            and r.target_id is not None
        }
        if stored.type == "Patient":
            patients.add(stored.id)
        labels = {
            (r.system, r.code)
            for r in rows
            if isinstance(r, TokenRow) and r.param == "_security" and r.system is not None
        }
        codes = {
            (r.system, r.code)
            for r in rows
            if isinstance(r, TokenRow) and r.param == "code" and r.system is not None
        }
        dated = self.clinical_dates.get(stored.type)
        dates = {(r.low, r.high) for r in rows if isinstance(r, DateRow) and r.param == dated}
        refs = {
            f"{r.target_type}/{r.target_id}"
            for r in rows
            if isinstance(r, ReferenceRow) and r.target_type and r.target_id
        }
        return ResourceFacts(
            stored.type,
            frozenset(patients),
            frozenset(labels),
            frozenset(codes),
            id=stored.id,
            dates=frozenset(dates),
            refs=frozenset(refs),
            custodian=stored.custodian,
        )

    def decide(
        self,
        ctx: RequestContext,
        facts: ResourceFacts,
        source: Facts,
        now: datetime,
        *,
        derived: bool = False,
    ) -> Decision:
        """The decision for a resource whose :meth:`quick` answer was None."""
        assert ctx.organization is not None
        if derived and ctx.organization in source.holders(facts.patients):
            # Derived by the exchange (the enterprise Patient) from the caller's record.
            return Decision(True, "derived from a record the caller holds")
        caller = self._caller(ctx, ctx.organization)
        return self.evaluate(caller, facts, source, now)

    def evaluate(
        self, caller: Caller, facts: ResourceFacts, source: Facts, now: datetime
    ) -> Decision:
        if not facts.patients:
            return Decision(False, "patient data of no patient: custodian only")
        # Consents and grants on the enterprise Patient cover its source records.
        linked = source.linking(sorted(facts.patients)) - facts.patients
        if linked:
            facts = replace(facts, patients=facts.patients | linked)
        consents = self._parsed(source.consents(sorted(facts.patients)))
        grants = self._grants_of(caller, facts.patients, now)
        rules = compile_rules(self.policy, caller, now, consents, grants)
        ok, rule = rules.covers(facts)
        return Decision(ok, rule)

    def caller(self, organization: str, purpose: str | None, actor: str | None = None) -> Caller:
        """A caller described by the decision API (``Consent/$evaluate``)."""
        ctx = RequestContext(
            actor=actor or organization, organization=organization, purpose=purpose
        )
        return self._caller(ctx, organization)

    # -- searches -----------------------------------------------------------------

    def visibility(self, ctx: RequestContext, source: Facts, now: datetime) -> Visibility:
        """What ``ctx`` may see, as a filter the store applies inside every query."""
        if ctx.organization is None or self.sees_everything(ctx, now):
            return Visibility()
        caller = self._caller(ctx, ctx.organization)
        # Each shape is compiled once, for a stand-in patient the store resolves.
        consents = [
            replace(record, patient=_SHAPE + shape)
            for shape, raw in source.shapes()
            if (record := parse_consent(raw)) is not None
        ]
        grants: list[CardGrant] = []
        if self._grants is not None and not caller.platform:
            granted = {
                p.removeprefix("Patient/")
                for p in self._grants.granted_patients(caller.organization, now)
            }
            grants = self._grants_of(caller, granted, now)
        rules = compile_rules(self.policy, caller, now, consents, grants)
        permit_groups, deny_groups = rules.regions()
        permits = tuple(_resolve(g) for g in permit_groups)
        denies = tuple(_resolve(g) for g in deny_groups)
        return Visibility(
            restricted=True,
            own=frozenset({caller.organization}),
            patient_data=self.patient_data,
            compartment=self._compartment,
            permits=permits,
            denies=denies,
            sensitive_labels=self.policy.sensitive_labels,
            sensitive_codes=self.policy.sensitive_codes,
            shape_param=SHAPE_PARAM,
            clinical_dates=self.clinical_dates,
        )

    # -- helpers --------------------------------------------------------------------

    def _grants_of(
        self, caller: Caller, patients: Collection[str], now: datetime
    ) -> list[CardGrant]:
        if self._grants is None or caller.platform or not patients:
            return []
        found = self._grants.active(
            [f"Patient/{p}" for p in sorted(patients)], caller.organization, now
        )
        return [
            CardGrant(g.patient.removeprefix("Patient/"), g.organization, g.start, g.end)
            for g in found
        ]

    @staticmethod
    def _parsed(resources: Sequence[Mapping[str, Any]]) -> list[ConsentRecord]:
        out = []
        for raw in resources:
            record = parse_consent(raw)
            if record is not None:
                out.append(record)
        return out
