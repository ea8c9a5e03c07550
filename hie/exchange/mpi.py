"""The master patient index in the write path.

Every source Patient written through the exchange (REST, HL7, DICOM, card) is matched to
an enterprise ("golden") Patient inside the same unit of work:

* the matcher (``hie.identity``) decides over the enterprise patients its blocking keys
  reach: the same valid resident ID number or card number is a MATCH, otherwise
  Fellegi-Sunter weights; two different valid resident ID numbers are never auto-linked;
* MATCH links (``auto``), POSSIBLE_MATCH links provisionally (``provisional``) and queues a
  review, NO_MATCH creates a new enterprise Patient;
* a link a person made (``manual``) or an HL7 A40 merge made (``merged``) is never moved by
  the matcher; the record's data are still refreshed;
* the enterprise Patient is rewritten from its members by the survivorship rule (card data
  win, then the most recently updated hospital record) and lists its members in
  ``Patient.link`` (``seealso``, with the link status in an extension).

Enterprise Patients carry ``meta.tag`` ``urn:hie:identity|enterprise`` and only the
enterprise identifier: resident ID and card numbers stay on the source records, so a
conditional write by such a number never meets two Patients.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from hie.context import RequestContext
from hie.errors import BadRequest, NotFound
from hie.exchange.protection import Protection
from hie.fhir.identifiers import (
    CARD_SYSTEM,
    ENTERPRISE_SYSTEM,
    IDENTITY_TAG_SYSTEM,
    RESIDENT_ID_SYSTEM,
)
from hie.identity import (
    CARD_SOURCE,
    Candidate,
    Identifier,
    Matcher,
    Outcome,
    PersonName,
    PersonRecord,
    golden_record,
)
from hie.identity.names import has_hanzi
from hie.storage.ports import IdentityLink, IdentityTables, ReviewItem, UnitOfWork

__all__ = [
    "HUMAN_STATUSES",
    "LINK_STATUS_URL",
    "MasterPatientIndex",
    "MatchResult",
    "Writes",
    "is_enterprise",
]

LINK_STATUS_URL = "urn:hie:identity:link-status"
HUMAN_STATUSES = ("manual", "merged")
ENTERPRISE_TAG = {"system": IDENTITY_TAG_SYSTEM, "code": "enterprise"}
_RECORD_CONTEXT = b"mpi.record"
_SYSTEM = RequestContext.system(actor="hie-identity")


class Writes:
    """What the index needs from the writer: read and write Patients in the unit of work."""

    def __init__(
        self,
        update: Callable[[UnitOfWork, RequestContext, dict[str, Any], str], Any],
        create: Callable[[UnitOfWork, RequestContext, dict[str, Any], str], Any] | None = None,
    ) -> None:
        """``create`` writes a Patient known to be new (bulk enrolment); without it
        ``update`` does."""
        self.update = update
        self.create = create


@dataclass(frozen=True, slots=True)
class MatchResult:
    enterprise_id: str
    outcome: Outcome
    score: float
    reason: str


def is_enterprise(body: Mapping[str, Any]) -> bool:
    tags = (body.get("meta") or {}).get("tag") or []
    return any(
        t.get("system") == IDENTITY_TAG_SYSTEM and t.get("code") == "enterprise" for t in tags
    )


def _is_card_record(ctx: RequestContext, body: Mapping[str, Any]) -> bool:
    tags = (body.get("meta") or {}).get("tag") or []
    return ctx.source == CARD_SOURCE or any(
        t.get("system") == IDENTITY_TAG_SYSTEM and t.get("code") == CARD_SOURCE for t in tags
    )


def _ref_id(ref: Any) -> str | None:
    text = ref.get("reference") if isinstance(ref, dict) else None
    if isinstance(text, str) and "Patient/" in text:
        return text.rsplit("Patient/", 1)[1].split("/")[0] or None
    return None


class MasterPatientIndex:
    def __init__(
        self,
        *,
        matcher: Matcher,
        protection: Protection,
        new_id: Callable[[], str],
        clock: Callable[[], dt.datetime],
        max_candidates: int = 200,
    ) -> None:
        self.matcher = matcher
        self._p = protection
        self._new_id = new_id
        self._clock = clock
        self._max = max_candidates

    # -- records ---------------------------------------------------------------------

    def record_of(self, source_id: str, body: Mapping[str, Any], source: str) -> PersonRecord:
        """The matcher's view of a Patient (numbers in plain: this never leaves memory)."""
        names: list[PersonName] = []
        for n in body.get("name") or []:
            family = str(n.get("family") or "")
            given_parts = [str(g) for g in n.get("given") or []]
            joiner = "" if has_hanzi(family + "".join(given_parts)) else " "
            given = joiner.join(given_parts)
            if not family and not given and n.get("text"):
                given = str(n["text"])
            if family or given:
                names.append(PersonName(family, given))
        birth = None
        raw_birth = body.get("birthDate")
        if isinstance(raw_birth, str) and len(raw_birth) == 10:
            try:
                birth = dt.date.fromisoformat(raw_birth)
            except ValueError:
                birth = None
        phone = next(
            (
                str(t["value"])
                for t in body.get("telecom") or []
                if t.get("system") in ("phone", "sms") and t.get("value")
            ),
            None,
        )
        address = locality = postal = None
        addresses = body.get("address") or []
        if addresses:
            a = addresses[0]
            address = "".join(a.get("line") or []) or a.get("text")
            locality = a.get("district") or a.get("city")
            postal = a.get("postalCode")
        resident_id = card_no = None
        others: list[Identifier] = []
        for ident in body.get("identifier") or []:
            system, value = ident.get("system"), ident.get("value")
            if not isinstance(system, str) or not isinstance(value, str):
                continue
            if system == RESIDENT_ID_SYSTEM:
                resident_id = resident_id or self._p.canonical("resident_id", value)
            elif system == CARD_SYSTEM:
                card_no = card_no or value
            elif system != ENTERPRISE_SYSTEM:
                others.append(Identifier(system, value))
        gender = body.get("gender")
        return PersonRecord(
            record_id=source_id,
            source=source,
            names=tuple(names),
            birth_date=birth,
            gender=gender if isinstance(gender, str) else None,
            phone=phone,
            address=address,
            locality=locality,
            postal_code=postal,
            resident_id=resident_id,
            card_no=card_no,
            identifiers=tuple(others),
            updated_at=self._clock(),
        )

    def _seal(self, r: PersonRecord) -> str:
        data = {
            "id": r.record_id,
            "source": r.source,
            "names": [[n.family, n.given] for n in r.names],
            "birth": r.birth_date.isoformat() if r.birth_date else None,
            "gender": r.gender,
            "phone": r.phone,
            "address": r.address,
            "locality": r.locality,
            "postal": r.postal_code,
            "rid": r.resident_id,
            "card": r.card_no,
            "ids": [[i.system, i.value] for i in r.identifiers],
            "updated": r.updated_at.isoformat() if r.updated_at else None,
        }
        return self._p.encrypt(orjson.dumps(data).decode("utf-8"), _RECORD_CONTEXT)

    def open_record(self, link: IdentityLink) -> PersonRecord:
        d = orjson.loads(self._p.decrypt(link.sealed, _RECORD_CONTEXT))
        return PersonRecord(
            record_id=d["id"],
            source=d["source"],
            names=tuple(PersonName(f, g) for f, g in d["names"]),
            birth_date=dt.date.fromisoformat(d["birth"]) if d["birth"] else None,
            gender=d["gender"],
            phone=d["phone"],
            address=d["address"],
            locality=d["locality"],
            postal_code=d["postal"],
            resident_id=d["rid"],
            card_no=d["card"],
            identifiers=tuple(Identifier(s, v) for s, v in d["ids"]),
            updated_at=dt.datetime.fromisoformat(d["updated"]) if d["updated"] else None,
        )

    def link_for(self, record: PersonRecord, **fields: Any) -> IdentityLink:
        rid = record.resident_id
        prepared = self.matcher.prepare(record)
        return IdentityLink(
            source_id=record.record_id,
            source=record.source,
            sealed=self._seal(record),
            rid_index=self._p.index("resident_id", rid) if rid else None,
            rid_valid=prepared.resident_id_valid if rid else None,
            card_no=record.card_no,
            updated=self._clock(),
            keys=tuple(self.matcher.blocking_keys(prepared)),
            **fields,
        )

    def resealed(self, link: IdentityLink) -> IdentityLink:
        """The link re-encrypted and re-indexed under the current keys (key rotation)."""
        record = self.open_record(link)
        fresh = self.link_for(
            record,
            enterprise_id=link.enterprise_id,
            status=link.status,
            score=link.score,
            reason=link.reason,
            merged_from=link.merged_from,
        )
        return replace(fresh, updated=link.updated)

    # -- the write path ----------------------------------------------------------------

    def observe(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        writes: Writes,
        resource_type: str,
        id_: str,
        body: Mapping[str, Any] | None,
    ) -> None:
        """Called by the writer after every write (``body`` None: a deletion)."""
        if resource_type != "Patient":
            return
        if body is None:
            self._forget(uow, writes, id_)
        elif not is_enterprise(body):
            self.index(uow, ctx, writes, id_, body)

    def index(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        writes: Writes,
        id_: str,
        body: Mapping[str, Any],
    ) -> str:
        """Match (or re-match) a source Patient; returns its enterprise id."""
        tables = uow.identity
        source = CARD_SOURCE if _is_card_record(ctx, body) else (ctx.organization or "fhir")
        record = self.record_of(id_, body, source)
        for key in self.matcher.blocking_keys(record):
            if key.startswith(("resident_id=", "card_no=")):
                uow.lock("mpi:" + key)  # two first contacts of one person: one enterprise
        current = tables.get(id_)
        survivor = next(
            (
                _ref_id(link.get("other"))
                for link in body.get("link") or []
                if link.get("type") == "replaced-by"
            ),
            None,
        )
        if survivor is not None and survivor != id_:
            target = tables.get(survivor)
            if target is not None:
                link = self.link_for(
                    record,
                    enterprise_id=target.enterprise_id,
                    status="merged",
                    reason="hl7-merge",
                    score=0.0,
                )
                return self._move(uow, writes, current, link)
        if current is not None and current.status in HUMAN_STATUSES:
            link = self.link_for(
                record,
                enterprise_id=current.enterprise_id,
                status=current.status,
                score=current.score,
                reason=current.reason,
                merged_from=current.merged_from,
            )
            return self._move(uow, writes, current, link)
        decision = self.matcher.decide(record, self._clusters(tables, record, exclude=id_))
        if current is not None:  # a source never linked has no reviews
            self._supersede_reviews(tables, id_)
        if decision.outcome is Outcome.NO_MATCH or decision.enterprise_id is None:
            enterprise = None
            if current is not None:
                alone = [m for m in tables.members([current.enterprise_id]) if m.source_id != id_]
                if not alone:
                    enterprise = current.enterprise_id
            link = self.link_for(
                record,
                enterprise_id=enterprise or self._new_id(),
                status="auto",
                score=decision.score,
                reason="no-match",
            )
        else:
            status = "auto" if decision.outcome is Outcome.MATCH else "provisional"
            link = self.link_for(
                record,
                enterprise_id=decision.enterprise_id,
                status=status,
                score=decision.score,
                reason=decision.reason,
            )
            if status == "provisional":
                tables.add_review(
                    ReviewItem(
                        id=0,
                        source_id=id_,
                        enterprise_id=decision.enterprise_id,
                        score=decision.score,
                        reason=decision.reason,
                        created=self._clock(),
                    )
                )
        return self._move(uow, writes, current, link)

    def _clusters(
        self, tables: IdentityTables, record: PersonRecord, *, exclude: str | None
    ) -> dict[str, list[PersonRecord]]:
        keys = self.matcher.blocking_keys(record)
        clusters: dict[str, list[PersonRecord]] = {}
        for member in tables.candidate_members(keys, self._max):
            if member.source_id != exclude:
                clusters.setdefault(member.enterprise_id, []).append(self.open_record(member))
        return clusters

    def _supersede_reviews(self, tables: IdentityTables, source_id: str) -> None:
        for item in tables.reviews("open", 100, source_id):
            tables.set_review(item.id, "superseded", None)

    def _move(
        self, uow: UnitOfWork, writes: Writes, current: IdentityLink | None, link: IdentityLink
    ) -> str:
        if current is None:
            uow.identity.add_new([link])  # a first link: no old blocking keys to compare
        else:
            uow.identity.put(link)
        self.refresh(uow, writes, link.enterprise_id)
        if current is not None and current.enterprise_id != link.enterprise_id:
            self.refresh(uow, writes, current.enterprise_id)
        return link.enterprise_id

    def _forget(self, uow: UnitOfWork, writes: Writes, id_: str) -> None:
        current = uow.identity.get(id_)
        if current is None:
            return
        uow.identity.remove(id_)
        self._supersede_reviews(uow.identity, id_)
        self.refresh(uow, writes, current.enterprise_id)

    # -- the enterprise Patient ----------------------------------------------------------

    def refresh(
        self, uow: UnitOfWork, writes: Writes, enterprise_id: str, *, replaced_by: str | None = None
    ) -> None:
        """Rewrite the enterprise Patient from its members (survivorship)."""
        members = uow.identity.members([enterprise_id])
        existing = uow.get("Patient", enterprise_id)
        if not members:
            if existing is None or existing.deleted:
                return
            old = self._p.plain(existing.content)
            body: dict[str, Any] = {
                k: v for k, v in old.items() if k not in ("link", "active", "meta")
            }
            body["meta"] = {"tag": [ENTERPRISE_TAG]}
            body["active"] = False
            if replaced_by is None:
                replaced_by = next(
                    (
                        _ref_id(x.get("other"))
                        for x in old.get("link") or []
                        if x.get("type") == "replaced-by"
                    ),
                    None,
                )
            if replaced_by:
                body["link"] = [
                    {"other": {"reference": f"Patient/{replaced_by}"}, "type": "replaced-by"}
                ]
            writes.update(uow, _SYSTEM, body, enterprise_id)
            return
        body = self._enterprise_body(enterprise_id, members, [self.open_record(m) for m in members])
        writes.update(uow, _SYSTEM, body, enterprise_id)

    def _enterprise_body(
        self, enterprise_id: str, members: Sequence[IdentityLink], records: list[PersonRecord]
    ) -> dict[str, Any]:
        golden = golden_record(enterprise_id, records)
        body = _golden_body(enterprise_id, golden)
        links: list[dict[str, Any]] = [
            {
                "extension": [{"url": LINK_STATUS_URL, "valueCode": m.status}],
                "other": {"reference": f"Patient/{m.source_id}"},
                "type": "seealso",
            }
            for m in members
        ]
        for gone in sorted({m.merged_from for m in members if m.merged_from}):
            links.append({"other": {"reference": f"Patient/{gone}"}, "type": "replaces"})
        body["link"] = links
        return body

    # -- bulk enrolment ------------------------------------------------------------------

    def enroll(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        writes: Writes,
        sources: Sequence[tuple[str, Mapping[str, Any]]],
    ) -> list[str]:
        """Match many new source Patients (just written, not yet indexed) in one go;
        returns their enterprise ids, in order.

        The same decisions as :meth:`index`, with one blocking query for the whole batch:
        a record with a valid resident ID number whose every candidate cluster holds a
        member with another valid number can only be NO_MATCH (``rules``: different valid
        numbers are never linked), so it gets a new enterprise Patient without opening a
        sealed record. Every other record (no valid number, a candidate that may match,
        the rule relaxed to possible_match, or a number seen twice in the batch) goes
        through :meth:`index` one by one, after the fast ones are stored.
        """
        tables = uow.identity
        records = [
            self.record_of(
                id_,
                body,
                CARD_SOURCE if _is_card_record(ctx, body) else (ctx.organization or "fhir"),
            )
            for id_, body in sources
        ]
        prepared = [self.matcher.prepare(r) for r in records]
        keys = [self.matcher.blocking_keys(p) for p in prepared]
        uow.lock_all(
            sorted(
                {
                    "mpi:" + k
                    for ks in keys
                    for k in ks
                    if k.startswith(("resident_id=", "card_no="))
                }
            )
        )
        holders: dict[str, list[IdentityLink]] = {}
        for key, link in tables.key_holders([k for ks in keys for k in ks]):
            holders.setdefault(key, []).append(link)
        strict = self.matcher.config.different_resident_id == "no_match"
        fast: list[tuple[IdentityLink, PersonRecord]] = []
        slow: list[int] = []
        seen: set[str] = set()
        for i, (record, p) in enumerate(zip(records, prepared, strict=True)):
            rid = record.resident_id
            rid_index = self._p.index("resident_id", rid) if rid else None
            clusters: dict[str, list[IdentityLink]] = {}
            for key in keys[i]:
                for member in holders.get(key, ()):
                    clusters.setdefault(member.enterprise_id, []).append(member)
            go_slow = not strict or rid is None or rid_index is None or not p.resident_id_valid
            if not go_slow and (rid_index in seen or clusters):
                mine = set(self._p.lookup("resident_id", rid or ""))
                go_slow = rid_index in seen or not all(
                    any(m.rid_valid and m.rid_index not in mine for m in members)
                    for members in clusters.values()
                )
            if rid_index is not None:
                seen.add(rid_index)
            if go_slow:
                slow.append(i)
                continue
            link = IdentityLink(
                source_id=record.record_id,
                enterprise_id=self._new_id(),
                source=record.source,
                sealed=self._seal(record),
                status="auto",
                score=0.0,
                reason="no-match",
                rid_index=rid_index,
                rid_valid=True,
                card_no=record.card_no,
                updated=self._clock(),
                keys=tuple(keys[i]),
            )
            fast.append((link, record))
        tables.add_new([link for link, _ in fast])
        create = writes.create
        for link, record in fast:
            golden = self._enterprise_body(link.enterprise_id, [link], [record])
            if create is not None:
                create(uow, _SYSTEM, golden, link.enterprise_id)
            else:
                writes.update(uow, _SYSTEM, golden, link.enterprise_id)
        enterprises = {link.source_id: link.enterprise_id for link, _ in fast}
        for i in slow:
            id_, source_body = sources[i]
            enterprises[id_] = self.index(uow, ctx, writes, id_, source_body)
        return [enterprises[id_] for id_, _ in sources]

    # -- lookups -----------------------------------------------------------------------

    def enterprise_of(self, uow: UnitOfWork, patient_id: str) -> str | None:
        link = uow.identity.get(patient_id)
        enterprise = link.enterprise_id if link is not None else None
        if enterprise is None:
            stored = uow.get("Patient", patient_id)
            if stored is None or stored.deleted or not is_enterprise(self._p.plain(stored.content)):
                return None
            enterprise = patient_id
        return self._follow(uow, enterprise)

    def _follow(self, uow: UnitOfWork, enterprise_id: str) -> str:
        """A merged-away enterprise Patient stands for the one that replaced it."""
        seen = {enterprise_id}
        while True:
            stored = uow.get("Patient", enterprise_id)
            if stored is None or stored.deleted:
                return enterprise_id
            body = orjson.loads(stored.content)
            nxt = next(
                (
                    _ref_id(x.get("other"))
                    for x in body.get("link") or []
                    if x.get("type") == "replaced-by"
                ),
                None,
            )
            if nxt is None or nxt in seen:
                return enterprise_id
            seen.add(nxt)
            enterprise_id = nxt

    def enterprise_by_identifier(self, uow: UnitOfWork, system: str, value: str) -> str | None:
        tables = uow.identity
        if system == RESIDENT_ID_SYSTEM:
            links = tables.by_resident_index(self._p.lookup("resident_id", value))
        elif system == CARD_SYSTEM:
            links = tables.by_card(value.replace(" ", "").replace("-", ""))
        elif system == ENTERPRISE_SYSTEM:
            return self.enterprise_of(uow, value)
        else:
            return None
        links = [x for x in links if x.status != "merged"] or links
        if not links:
            return None
        return self._follow(uow, sorted(links, key=lambda x: x.source_id)[0].enterprise_id)

    def sources_by_identifier(self, uow: UnitOfWork, system: str, value: str) -> list[str]:
        if system == RESIDENT_ID_SYSTEM:
            links = uow.identity.by_resident_index(self._p.lookup("resident_id", value))
        elif system == CARD_SYSTEM:
            links = uow.identity.by_card(value.replace(" ", "").replace("-", ""))
        else:
            return []
        return [x.source_id for x in links]

    def members(self, uow: UnitOfWork, enterprise_id: str) -> list[IdentityLink]:
        return uow.identity.members([enterprise_id])

    def match(self, uow: UnitOfWork, body: Mapping[str, Any]) -> list[MatchResult]:
        """Enterprise patients ranked against a query Patient (PDQm ``$match``)."""
        record = self.record_of("$match", body, "query")
        ranked: Iterable[Candidate] = self.matcher.rank(
            record, self._clusters(uow.identity, record, exclude=None)
        )
        return [
            MatchResult(
                c.enterprise_id, c.comparison.outcome, c.comparison.score, c.comparison.reason
            )
            for c in ranked
        ]

    # -- people's decisions ----------------------------------------------------------

    def _source_link(self, uow: UnitOfWork, source_id: str) -> IdentityLink:
        link = uow.identity.get(source_id)
        if link is None:
            raise NotFound(f"Patient/{source_id} is not a source Patient of the index")
        return link

    def _enterprise(self, uow: UnitOfWork, enterprise_id: str) -> None:
        stored = uow.get("Patient", enterprise_id)
        if stored is None or stored.deleted or not is_enterprise(orjson.loads(stored.content)):
            raise NotFound(f"Patient/{enterprise_id} is not an enterprise Patient")

    def link(
        self, uow: UnitOfWork, writes: Writes, source_id: str, enterprise_id: str, actor: str
    ) -> str:
        current = self._source_link(uow, source_id)
        self._enterprise(uow, enterprise_id)
        self._resolve_reviews(uow, source_id, enterprise_id, actor)
        link = replace(current, enterprise_id=enterprise_id, status="manual", reason="manual-link")
        return self._move(uow, writes, current, link)

    def unlink(self, uow: UnitOfWork, writes: Writes, source_id: str, actor: str) -> str:
        current = self._source_link(uow, source_id)
        self._resolve_reviews(uow, source_id, None, actor)
        link = replace(
            current, enterprise_id=self._new_id(), status="manual", reason="manual-unlink"
        )
        return self._move(uow, writes, current, link)

    def _resolve_reviews(
        self, uow: UnitOfWork, source_id: str, enterprise_id: str | None, actor: str
    ) -> None:
        for item in uow.identity.reviews("open", 100, source_id):
            status = "accepted" if item.enterprise_id == enterprise_id else "rejected"
            uow.identity.set_review(item.id, status, actor)

    def merge(self, uow: UnitOfWork, writes: Writes, retired: str, survivor: str) -> str:
        """Every member of ``retired`` moves to ``survivor``; undone by :meth:`unmerge`."""
        if retired == survivor:
            raise BadRequest("an enterprise Patient cannot be merged into itself")
        self._enterprise(uow, retired)
        self._enterprise(uow, survivor)
        for member in uow.identity.members([retired]):
            uow.identity.put(
                replace(member, enterprise_id=survivor, status="manual", merged_from=retired)
            )
        self.refresh(uow, writes, retired, replaced_by=survivor)
        self.refresh(uow, writes, survivor)
        return survivor

    def unmerge(self, uow: UnitOfWork, writes: Writes, retired: str) -> str:
        self._enterprise(uow, retired)
        stored = uow.get("Patient", retired)
        assert stored is not None
        survivor = next(
            (
                _ref_id(x.get("other"))
                for x in orjson.loads(stored.content).get("link") or []
                if x.get("type") == "replaced-by"
            ),
            None,
        )
        if survivor is None:
            raise BadRequest(f"Patient/{retired} was not merged into another enterprise Patient")
        moved = uow.identity.merged_into(survivor, retired)
        for member in moved:
            uow.identity.put(replace(member, enterprise_id=retired, merged_from=None))
        self.refresh(uow, writes, retired)
        self.refresh(uow, writes, survivor)
        return retired

    def reviews(self, uow: UnitOfWork, limit: int) -> list[ReviewItem]:
        return uow.identity.reviews("open", limit)

    def decide_review(
        self, uow: UnitOfWork, writes: Writes, review_id: int, accept: bool, actor: str
    ) -> str:
        item = next((r for r in uow.identity.reviews("open", 10_000) if r.id == review_id), None)
        if item is None:
            raise NotFound(f"review {review_id} is not open")
        if accept:
            return self.link(uow, writes, item.source_id, item.enterprise_id, actor)
        return self.unlink(uow, writes, item.source_id, actor)


def _golden_body(enterprise_id: str, golden: PersonRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"tag": [ENTERPRISE_TAG]},
        "identifier": [{"system": ENTERPRISE_SYSTEM, "value": enterprise_id}],
        "active": True,
    }
    names = []
    for n in golden.names:
        name: dict[str, Any] = {"text": n.text}
        if n.family:
            name["family"] = n.family
        if n.given:
            name["given"] = [n.given]
        names.append(name)
    if names:
        body["name"] = names
    if golden.phone:
        body["telecom"] = [{"system": "phone", "value": golden.phone}]
    if golden.gender:
        body["gender"] = golden.gender
    if golden.birth_date:
        body["birthDate"] = golden.birth_date.isoformat()
    address: dict[str, Any] = {}
    if golden.address:
        address["line"] = [golden.address]
    if golden.locality:
        address["district"] = golden.locality
    if golden.postal_code:
        address["postalCode"] = golden.postal_code
    if address:
        body["address"] = [address]
    return body


def grade(result: MatchResult, match_threshold: float, possible_threshold: float) -> str:
    """IHE PDQm match-grade: certain, probable, possible or certainly-not."""
    if result.outcome is Outcome.MATCH:
        return "certain"
    if result.outcome is Outcome.POSSIBLE_MATCH:
        middle = (match_threshold + possible_threshold) / 2
        return "probable" if result.score >= middle else "possible"
    return "certainly-not"


def search_score(result: MatchResult, match_threshold: float) -> float:
    if result.outcome is Outcome.MATCH:
        return 1.0
    return round(max(0.0, min(0.99, result.score / match_threshold)), 3)


def unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))
