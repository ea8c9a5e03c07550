"""The identity part of the service API: enterprise lookups, PIXm, PDQm ``$match``, and
people's link decisions (link, unlink, merge, unmerge, the review queue).

Every call checks the caller's scopes, runs in one unit of work and is audited, like the
rest of ``hie.exchange``. Manual decisions need the scope :data:`MANAGE_SCOPE` (or
update on Patient).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from hie.context import Interaction, RequestContext
from hie.crypto import mask_resident_id
from hie.errors import BadRequest, Forbidden, NotFound
from hie.exchange.mpi import MasterPatientIndex, Writes, grade, is_enterprise, search_score
from hie.exchange.protection import Protection
from hie.fhir.identifiers import ENTERPRISE_SYSTEM, RESIDENT_ID_SYSTEM
from hie.identity import Outcome
from hie.storage.ports import ReviewItem, Store, StoredResource, UnitOfWork

Match = Callable[[UnitOfWork, str, Sequence[tuple[str, str]]], list[StoredResource]]

if TYPE_CHECKING:
    from hie.exchange.service import Exchange

__all__ = ["MANAGE_SCOPE", "MATCH_GRADE_URL", "IdentityOperations"]

MANAGE_SCOPE = "hie.identity.manage"
MATCH_GRADE_URL = "http://hl7.org/fhir/StructureDefinition/match-grade"


def patient_id(ref: str) -> str:
    """``Patient/abc``, ``https://.../Patient/abc`` or ``abc`` -> ``abc``."""
    text = ref.strip()
    if "Patient/" in text:
        text = text.rsplit("Patient/", 1)[1].split("/")[0]
    if not text or "/" in text or "|" in text:
        raise BadRequest(f"'{ref}' is not a Patient reference")
    return text


class IdentityOperations:
    def __init__(
        self,
        exchange: Exchange,
        store: Store,
        mpi: MasterPatientIndex,
        protection: Protection,
        writes: Writes,
        match: Match,
    ) -> None:
        self._x = exchange
        self._match = match
        self._store = store
        self.mpi = mpi
        self._p = protection
        self._writes = writes

    # -- lookups -------------------------------------------------------------------------

    def _may_resolve(self, ctx: RequestContext, interaction: Interaction) -> None:
        # The card service's readers hold card.* scopes, not clinical ones.
        if any(n.startswith("card.") for n in ctx.scopes.names) or ctx.scopes.has(MANAGE_SCOPE):
            return
        self._x.require(ctx, interaction, "Patient")

    def enterprise_of(self, ctx: RequestContext, patient_ref: str) -> str:
        self._may_resolve(ctx, Interaction.READ)
        pid = patient_id(patient_ref)
        # A linked source whose enterprise Patient stands (was not merged away): one read.
        found_link = self._store.enterprise_link(pid)
        if found_link is not None:
            enterprise, stored = found_link
            if stored is not None and not stored.deleted and b"replaced-by" not in stored.content:
                return f"Patient/{enterprise}"
        with self._store.unit_of_work(write=False) as uow:
            found = self.mpi.enterprise_of(uow, pid)
        if found is None:
            raise NotFound(f"Patient/{pid} is not known to the master patient index")
        return f"Patient/{found}"

    def enterprise_by_identifier(self, ctx: RequestContext, system: str, value: str) -> str | None:
        """``Patient/<enterprise id>`` of the person holding a resident ID or card number."""
        self._may_resolve(ctx, Interaction.SEARCH)
        with self._store.unit_of_work(write=False) as uow:
            found = self.mpi.enterprise_by_identifier(uow, system, value)
        return None if found is None else f"Patient/{found}"

    def pix(
        self, ctx: RequestContext, source_identifier: str, target_systems: Sequence[str] = ()
    ) -> dict[str, Any]:
        """IHE PIXm (ITI-83): every identifier of the person, as a Parameters resource."""
        self._x.require(ctx, Interaction.SEARCH, "Patient")
        system, sep, value = source_identifier.partition("|")
        if not sep or not system or not value:
            raise BadRequest("sourceIdentifier must be 'system|value'")
        masked = self._p.masked_for(ctx)
        with self._store.unit_of_work(write=False) as uow:
            enterprise = self._enterprise_for(uow, system, value)
            if enterprise is None:
                raise NotFound("sourceIdentifier Patient Identifier not found")
            params: list[dict[str, Any]] = []
            seen = {(system, self._shown(system, value, masked))}
            refs = [enterprise] + [m.source_id for m in self.mpi.members(uow, enterprise)]
            for pid in refs:
                stored = uow.get("Patient", pid)
                if stored is None or stored.deleted:
                    continue
                if not self._x.permitted(ctx, Interaction.READ, stored):
                    continue
                body = self._p.open(orjson.loads(stored.content), masked=masked)
                for ident in body.get("identifier") or []:
                    key = (ident.get("system"), ident.get("value"))
                    if key in seen or (target_systems and key[0] not in target_systems):
                        continue
                    seen.add(key)
                    shown = {k: ident[k] for k in ("use", "type", "system", "value") if k in ident}
                    params.append({"name": "targetIdentifier", "valueIdentifier": shown})
                if not target_systems or any(s in target_systems for s in self._systems(body)):
                    params.append(
                        {"name": "targetId", "valueReference": {"reference": f"Patient/{pid}"}}
                    )
        self._x.record(ctx, "pix", resource_type="Patient", query=f"sourceIdentifier={system}|*")
        return {"resourceType": "Parameters", "parameter": params}

    def _shown(self, system: str, value: str, masked: bool) -> str:
        if system == RESIDENT_ID_SYSTEM and masked:
            return mask_resident_id(value)
        return value

    @staticmethod
    def _systems(body: dict[str, Any]) -> list[str]:
        return [str(i.get("system")) for i in body.get("identifier") or []]

    def _enterprise_for(self, uow: UnitOfWork, system: str, value: str) -> str | None:
        found = self.mpi.enterprise_by_identifier(uow, system, value)
        if found is not None or system == ENTERPRISE_SYSTEM:
            return found
        matches = self._match(uow, "Patient", [("identifier", f"{system}|{value}")])
        for stored in matches:
            enterprise = self.mpi.enterprise_of(uow, stored.id)
            if enterprise is not None:
                return enterprise
        return None

    def match(
        self,
        ctx: RequestContext,
        resource: Any,
        *,
        count: int | None = None,
        only_certain: bool = False,
    ) -> dict[str, Any]:
        """IHE PDQm ``$match`` (ITI-119): enterprise Patients with score and match grade."""
        self._x.require(ctx, Interaction.SEARCH, "Patient")
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            raise BadRequest("$match takes a Patient in the parameter 'resource'")
        self._x.validated(dict(resource), "Patient")
        cfg = self.mpi.matcher.config
        masked = self._p.masked_for(ctx)
        entries: list[dict[str, Any]] = []
        with self._store.unit_of_work(write=False) as uow:
            results = self.mpi.match(uow, resource)
            if only_certain:
                # certain matches only, and only when there is exactly one (ITI-119)
                results = [r for r in results if r.outcome is Outcome.MATCH]
                results = results if len(results) == 1 else []
            else:
                results = [r for r in results if r.outcome is not Outcome.NO_MATCH]
            limit = count if count is not None else len(results)
            for r in results[:limit]:
                stored = uow.get("Patient", r.enterprise_id)
                if stored is None or stored.deleted:
                    continue
                if not self._x.permitted(ctx, Interaction.READ, stored):
                    continue
                body = self._p.open(orjson.loads(stored.content), masked=masked)
                entries.append(
                    {
                        "fullUrl": f"{self._x.base_url}/Patient/{r.enterprise_id}",
                        "resource": body,
                        "search": {
                            "extension": [
                                {
                                    "url": MATCH_GRADE_URL,
                                    "valueCode": grade(
                                        r, cfg.match_threshold, cfg.possible_threshold
                                    ),
                                }
                            ],
                            "mode": "match",
                            "score": search_score(r, cfg.match_threshold),
                        },
                    }
                )
        self._x.record(ctx, "match", resource_type="Patient")
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "entry": entries,
        }

    # -- people's decisions ----------------------------------------------------------------

    def _may_manage(self, ctx: RequestContext) -> None:
        if not (ctx.scopes.has(MANAGE_SCOPE) or ctx.scopes.allows(Interaction.UPDATE, "Patient")):
            raise Forbidden(f"linking identities needs the scope '{MANAGE_SCOPE}'")

    def link(self, ctx: RequestContext, source_ref: str, enterprise_ref: str) -> str:
        self._may_manage(ctx)
        src, target = patient_id(source_ref), patient_id(enterprise_ref)
        with self._store.unit_of_work(write=True) as uow:
            found = self.mpi.link(uow, self._writes, src, target, ctx.actor)
            self._x.record(ctx, "identity-link", resource_type="Patient", resource_id=src, uow=uow)
        return f"Patient/{found}"

    def unlink(self, ctx: RequestContext, source_ref: str) -> str:
        self._may_manage(ctx)
        src = patient_id(source_ref)
        with self._store.unit_of_work(write=True) as uow:
            found = self.mpi.unlink(uow, self._writes, src, ctx.actor)
            self._x.record(
                ctx, "identity-unlink", resource_type="Patient", resource_id=src, uow=uow
            )
        return f"Patient/{found}"

    def merge(self, ctx: RequestContext, source_ref: str, target_ref: str) -> str:
        """Merge enterprise Patient ``source`` into ``target`` (undone by :meth:`unmerge`)."""
        self._may_manage(ctx)
        src, target = patient_id(source_ref), patient_id(target_ref)
        with self._store.unit_of_work(write=True) as uow:
            found = self.mpi.merge(uow, self._writes, src, target)
            self._x.record(ctx, "identity-merge", resource_type="Patient", resource_id=src, uow=uow)
        return f"Patient/{found}"

    def unmerge(self, ctx: RequestContext, source_ref: str) -> str:
        self._may_manage(ctx)
        src = patient_id(source_ref)
        with self._store.unit_of_work(write=True) as uow:
            found = self.mpi.unmerge(uow, self._writes, src)
            self._x.record(
                ctx, "identity-unmerge", resource_type="Patient", resource_id=src, uow=uow
            )
        return f"Patient/{found}"

    def reviews(self, ctx: RequestContext, limit: int = 50) -> list[ReviewItem]:
        self._may_manage(ctx)
        with self._store.unit_of_work(write=False) as uow:
            return self.mpi.reviews(uow, limit)

    def decide(self, ctx: RequestContext, review_id: int, *, accept: bool) -> str:
        self._may_manage(ctx)
        with self._store.unit_of_work(write=True) as uow:
            found = self.mpi.decide_review(uow, self._writes, review_id, accept, ctx.actor)
            self._x.record(
                ctx,
                "identity-review-accept" if accept else "identity-review-reject",
                resource_type="Patient",
                uow=uow,
            )
        return f"Patient/{found}"

    def is_enterprise_body(self, body: dict[str, Any]) -> bool:
        return is_enterprise(body)
