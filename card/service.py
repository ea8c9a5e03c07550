"""The card service: card life, readers, QR e-cards, check-in and the identity backbone.

Every operation checks the caller's card scope, works on the card tables in one short
transaction, writes FHIR resources (the card-source Patient, check-in Encounters) and
grants only through ``hie.exchange``, and leaves an audit record through the exchange's
audit seam. The resident ID number and phone leave this module only masked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from card import card_number, problems
from card.consents import consent_body, consent_id, consent_view
from card.enterprise import enterprise_patient
from card.holder import Holder, clean_name, parse_holder, parse_resident_id
from card.problems import STATUS_PROBLEMS, CardProblem
from card.pseudonyms import Pseudonyms
from card.qr import QrTokens
from card.registry import CardRegistry, CardRow, Conflict, PersonRow, Tx
from card.summary import shared_summary, summary_allowed
from hie.context import RequestContext, Scopes
from hie.crypto import BlindIndex, FieldCipher, mask_name, mask_phone, mask_resident_id
from hie.errors import NotFound
from hie.exchange import CARD_PRESENTED, TREATMENT, Exchange, Grant
from hie.fhir.identifiers import CARD_SYSTEM, IDENTITY_TAG_SYSTEM, RESIDENT_ID_SYSTEM

RID_CONTEXT = b"card_person.resident_id"
PHONE_CONTEXT = b"card_person.phone"
# The card service writes its FHIR resources as itself, for the caller's organisation.
_WRITE_SCOPES = Scopes("system/Patient.cru system/Encounter.c")
# A resident's own Consents, recorded and withdrawn through the card (card.consents).
_CONSENT_SCOPES = Scopes("system/Consent.crus consent.record")
# Spent QR token ids are forgotten this long after they expired, at most once per
# interval (a token used before its expiry can never be presented again after it).
QR_PRUNE_GRACE_US = 60_000_000
QR_PRUNE_INTERVAL_US = 60_000_000
# v3 ActReason: the patient asked (the resident managing their own consents).
_PATIENT_REQUEST = "PATRQT"
# The master patient index's names for the card number and for "this Patient comes from
# the card service": card data wins in its survivorship rule.
CARD_NUMBER_SYSTEM = CARD_SYSTEM
CARD_SOURCE_TAG = {"system": IDENTITY_TAG_SYSTEM, "code": "card"}
# (action, from statuses, to status)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "report-loss": (("active", "frozen"), "lost"),
    "replace": (("active", "lost"), "replaced"),
    "cancel": (("active", "frozen", "lost"), "cancelled"),
    "freeze": (("active",), "frozen"),
    "unfreeze": (("frozen",), "active"),
}


def to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def parse_card_number(value: object) -> str:
    if not isinstance(value, str):
        raise CardProblem(problems.BAD_REQUEST, "'card_no' must be a string")
    try:
        return card_number.parse(value)
    except card_number.CardNumberError as exc:
        raise CardProblem(
            problems.INVALID_CARD_NUMBER, exc.message, problem=str(exc.problem)
        ) from None


def require(ctx: RequestContext, scope: str) -> None:
    if not ctx.scopes.has(scope):
        raise CardProblem(problems.FORBIDDEN, f"this operation needs the scope '{scope}'")


def organization_of(ctx: RequestContext) -> str:
    if not ctx.organization:
        raise CardProblem(
            problems.NO_ORGANIZATION,
            "the token must name the caller's organisation (--org Organization/ID)",
        )
    return ctx.organization


@dataclasses.dataclass(frozen=True, slots=True)
class Identified:
    card: CardRow
    patient: str  # enterprise Patient reference


class CardService:
    def __init__(
        self,
        *,
        registry: CardRegistry,
        exchange: Exchange,
        cipher: FieldCipher,
        blind: BlindIndex,
        qr: QrTokens,
        pseudonyms: Pseudonyms,
        clock: Callable[[], datetime],
        grant_period: timedelta,
        custodian: str,
    ) -> None:
        self.registry = registry
        self.exchange = exchange
        self.cipher = cipher
        self.blind = blind
        self.qr = qr
        self.pseudonyms = pseudonyms
        self.clock = clock
        self.grant_period = grant_period
        self.custodian = custodian
        self._next_prune_us = 0  # when spent QR ids are next pruned (service clock)

    # -- helpers --------------------------------------------------------------

    def _writer(self, ctx: RequestContext) -> RequestContext:
        """The caller acting through the card service (the service's scopes)."""
        return dataclasses.replace(ctx, scopes=_WRITE_SCOPES)

    def _registrar(self, ctx: RequestContext) -> RequestContext:
        """For card-source Patients: held by the card authority, whichever office acts,
        so a replacement at another office may update the record its first office wrote."""
        return dataclasses.replace(ctx, scopes=_WRITE_SCOPES, organization=self.custodian)

    def _audit(
        self,
        ctx: RequestContext,
        action: str,
        patient: str | None,
        card_no: str | None,
        outcome: str = "success",
    ) -> None:
        _, _, pid = (patient or "").partition("/")
        self.exchange.record(
            ctx,
            action,
            resource_type="Patient" if pid else None,
            resource_id=pid or None,
            query=f"card_no={card_no}" if card_no else None,
            outcome=outcome,
        )

    def _patient_body(self, person: PersonRow, card_no: str) -> dict[str, Any]:
        rid = self.cipher.decrypt(person.resident_id_enc, RID_CONTEXT)
        body: dict[str, Any] = {
            "resourceType": "Patient",
            "meta": {"tag": [CARD_SOURCE_TAG]},
            "identifier": [
                {"system": RESIDENT_ID_SYSTEM, "value": rid},
                {"system": CARD_NUMBER_SYSTEM, "value": card_no},
            ],
            "active": True,
            "name": [{"text": person.name}],
            "gender": person.gender,
            "birthDate": person.birth_date,
        }
        if person.phone_enc:
            phone = self.cipher.decrypt(person.phone_enc, PHONE_CONTEXT)
            body["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
        if person.address:
            body["address"] = [{"text": person.address}]
        return body

    def enroll(self, person_ids: Sequence[int], *, actor: str) -> int:
        """Give card holders who have none their card-source Patient and enterprise Patient
        in one go (``hie card import``: every imported resident is in the master patient
        index at once, not at the card's first use). Returns how many were enrolled."""
        with self.registry.transaction(write=False) as tx:
            people = tx.enrolment(person_ids)
        if not people:
            return 0
        writer = self._registrar(RequestContext.system(actor=actor))
        pairs = self.exchange.enroll_patients(
            writer, [self._patient_body(person, card_no) for person, card_no in people]
        )
        with self.registry.transaction(write=True) as tx:
            tx.set_patients(
                [
                    (person.id, source)
                    for (person, _), (source, _) in zip(people, pairs, strict=True)
                ]
            )
        return len(people)

    def enroll_pending(
        self,
        *,
        actor: str,
        batch: int = 2000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """:meth:`enroll` every card holder still without a Patient (resumable)."""
        done, after = 0, 0
        while True:
            with self.registry.transaction(write=False) as tx:
                ids = tx.unenrolled(after, batch)
            if not ids:
                return done
            done += self.enroll(ids, actor=actor)
            after = ids[-1]
            if progress is not None:
                progress(len(ids))

    def _sync_patient(self, ctx: RequestContext, person: PersonRow, card_no: str) -> str:
        """Write (or update) the card-source Patient for the person's current card."""
        body = self._patient_body(person, card_no)
        writer = self._registrar(ctx)
        if person.patient is None:
            written = self.exchange.create(writer, "Patient", body)
            ref = f"Patient/{written.stored.id}"
            with self.registry.transaction(write=True) as tx:
                tx.set_patient(person.id, ref)
            return ref
        _, _, pid = person.patient.partition("/")
        body["id"] = pid
        self.exchange.update(writer, "Patient", pid, body)
        return person.patient

    def _enterprise(self, ctx: RequestContext, source: str) -> str:
        return enterprise_patient(self.exchange, self._writer(ctx), source)

    def _enterprise_or_none(self, ctx: RequestContext, source: str | None) -> str | None:
        return self._enterprise(ctx, source) if source else None

    def _patient_of(self, ctx: RequestContext, card: CardRow) -> str:
        """The card's enterprise Patient; imported cards get their Patient on first use."""
        source = card.person.patient or self._sync_patient(ctx, card.person, card.card_no)
        return self._enterprise(ctx, source)

    def _card(self, tx: Tx, card_no: str) -> CardRow:
        card = tx.card(card_no)
        if card is None:
            raise CardProblem(problems.CARD_NOT_FOUND, f"no card {card_no}")
        return card

    def holder_view(self, person: PersonRow) -> dict[str, Any]:
        rid = self.cipher.decrypt(person.resident_id_enc, RID_CONTEXT)
        out: dict[str, Any] = {
            "name": mask_name(person.name),
            "gender": person.gender,
            "birth_year": int(person.birth_date[:4]),
            "resident_id": mask_resident_id(rid),
        }
        if person.phone_enc:
            out["phone"] = mask_phone(self.cipher.decrypt(person.phone_enc, PHONE_CONTEXT))
        return out

    def card_view(self, card: CardRow, patient: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "card_no": card.card_no,
            "status": card.status,
            "issued_at": iso(card.issued_us),
            "updated_at": iso(card.updated_us),
        }
        if patient is not None:
            out["patient"] = patient
        for name in ("replaces", "replaced_by", "reason"):
            value = getattr(card, name)
            if value is not None:
                out[name] = value
        return out

    # -- cards ----------------------------------------------------------------

    def issue(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        require(ctx, "card.issue")
        now = self.clock()
        holder = parse_holder(body, now.date())
        card_no = self._issue_rows(ctx, holder, to_us(now))
        with self.registry.transaction(write=False) as tx:
            card = self._card(tx, card_no)
        # a returning resident keeps their Patient; the number on it becomes the new card's
        source = self._sync_patient(ctx, card.person, card_no)
        patient = self._enterprise(ctx, source)
        self._audit(ctx, "card.issue", patient, card_no)
        return {"card_no": card_no, "patient": patient, "status": card.status}

    def _issue_rows(self, ctx: RequestContext, holder: Holder, at: int) -> str:
        lookups = self.blind.lookup_values("resident_id", holder.resident_id)
        for _ in range(5):
            try:
                with self.registry.transaction(write=True) as tx:
                    person = tx.person_by_index(lookups)
                    if person is None:
                        person_id = tx.add_person(self._person_values(holder, at))
                    else:
                        person_id = person.id
                        live = tx.live_card(person_id)
                        if live is not None:
                            raise CardProblem(
                                problems.ALREADY_HOLDS_CARD,
                                f"the resident already holds card {live.card_no} ({live.status})",
                                card_no=live.card_no,
                            )
                    card_no = tx.next_card_no()
                    tx.add_card(card_no, person_id, "active", at)
                    tx.add_event(
                        card_no,
                        at,
                        "issue",
                        "active",
                        actor=ctx.actor,
                        organization=ctx.organization,
                    )
                return card_no
            except Conflict:
                continue  # a concurrent issue took the number or the person: look again
        raise CardProblem(problems.ALREADY_HOLDS_CARD, "the resident's card is being issued now")

    def _person_values(self, holder: Holder, at: int) -> dict[str, Any]:
        return {
            "resident_id_enc": self.cipher.encrypt(holder.resident_id, RID_CONTEXT),
            "resident_id_idx": self.blind.value("resident_id", holder.resident_id),
            "name": holder.name,
            "gender": holder.gender,
            "birth_date": holder.birth_date,
            "phone_enc": self.cipher.encrypt(holder.phone, PHONE_CONTEXT) if holder.phone else None,
            "phone_idx": self.blind.value("phone", holder.phone) if holder.phone else None,
            "address": holder.address,
            "created_us": at,
        }

    def get(self, ctx: RequestContext, card_no_raw: str) -> dict[str, Any]:
        require(ctx, "card.read")
        card_no = parse_card_number(card_no_raw)
        with self.registry.transaction(write=False) as tx:
            card = self._card(tx, card_no)
            history = tx.history(card_no)
        patient = card.person.patient
        out = self.card_view(card, self._enterprise(ctx, patient) if patient else None)
        out["holder"] = self.holder_view(card.person)
        out["history"] = [
            {
                "at": iso(e.at_us),
                "action": e.action,
                "status": e.status,
                **({"reason": e.reason} if e.reason else {}),
                **({"organization": e.organization} if e.organization else {}),
            }
            for e in history
        ]
        self._audit(ctx, "card.read", out.get("patient"), card_no)
        return out

    def change(
        self, ctx: RequestContext, card_no_raw: str, action: str, body: Any
    ) -> dict[str, Any]:
        """report-loss, replace, cancel, freeze, unfreeze."""
        require(ctx, "card.manage")
        card_no = parse_card_number(card_no_raw)
        reason = None
        if isinstance(body, dict) and body.get("reason") is not None:
            if not isinstance(body["reason"], str):
                raise CardProblem(problems.BAD_REQUEST, "'reason' must be a string")
            reason = body["reason"].strip() or None
        elif body is not None and not isinstance(body, dict):
            raise CardProblem(problems.BAD_REQUEST, "the body must be a JSON object")
        if action == "cancel" and reason is None:
            raise CardProblem(
                problems.BAD_REQUEST, "cancelling a card needs a 'reason' (death, emigration...)"
            )
        allowed, target = TRANSITIONS[action]
        at = to_us(self.clock())
        new_no = None
        for _ in range(5):
            try:
                with self.registry.transaction(write=True) as tx:
                    card = self._card(tx, card_no)
                    if card.status not in allowed:
                        raise CardProblem(
                            problems.INVALID_TRANSITION,
                            f"a {card.status} card cannot be {_PAST[action]}",
                            card_status=card.status,
                        )
                    if action == "replace":
                        new_no = tx.next_card_no()
                        tx.set_status(card_no, target, at, reason=reason, replaced_by=new_no)
                        tx.add_card(new_no, card.person.id, "active", at, replaces=card_no)
                        tx.add_event(
                            new_no,
                            at,
                            "issue",
                            "active",
                            reason=f"replaces {card_no}",
                            actor=ctx.actor,
                            organization=ctx.organization,
                        )
                    else:
                        tx.set_status(card_no, target, at, reason=reason)
                    tx.add_event(
                        card_no,
                        at,
                        action,
                        target,
                        reason=reason,
                        actor=ctx.actor,
                        organization=ctx.organization,
                    )
                break
            except Conflict:
                continue
        else:
            raise CardProblem(problems.INVALID_TRANSITION, "the card is being changed now")
        with self.registry.transaction(write=False) as tx:
            changed = self._card(tx, card_no)
        source = changed.person.patient
        if new_no is not None:
            source = self._sync_patient(ctx, changed.person, new_no)
        patient = self._enterprise(ctx, source) if source else None
        self._audit(ctx, f"card.{action}", patient, card_no)
        out = self.card_view(changed, patient)
        if new_no is not None:
            out["new_card"] = {"card_no": new_no, "status": "active", "patient": patient}
        return out

    # -- readers --------------------------------------------------------------

    def issue_qr(self, ctx: RequestContext, card_no_raw: str) -> dict[str, Any]:
        require(ctx, "card.read")
        card_no = parse_card_number(card_no_raw)
        with self.registry.transaction(write=False) as tx:
            card = self._card(tx, card_no)
        self._refuse_unusable(ctx, card, "card.qr")
        token, expires = self.qr.issue(card_no)
        self._audit(ctx, "card.qr", self._enterprise_or_none(ctx, card.person.patient), card_no)
        return {
            "qr": token,
            "card_no": card_no,
            "expires_at": iso(expires * 1_000_000),
            "expires_in": self.qr.ttl,
        }

    def _refuse_unusable(self, ctx: RequestContext, card: CardRow, action: str) -> None:
        kind = STATUS_PROBLEMS.get(card.status)
        if kind is None:
            return
        self._audit(
            ctx,
            action,
            self._enterprise_or_none(ctx, card.person.patient),
            card.card_no,
            outcome="refused",
        )
        detail = f"card {card.card_no} is {card.status}"
        if card.replaced_by:
            detail += "; the holder has a new card"
        raise CardProblem(kind, detail, card_status=card.status)

    def presented(self, ctx: RequestContext, body: Any, action: str) -> Identified:
        """The card a reader presents ({card_no} or {qr}), refused unless usable."""
        if not isinstance(body, dict):
            raise CardProblem(problems.BAD_REQUEST, "the body must be a JSON object")
        has_no, has_qr = body.get("card_no") is not None, body.get("qr") is not None
        if has_no == has_qr:
            raise CardProblem(problems.BAD_REQUEST, "send exactly one of 'card_no' and 'qr'")
        if has_qr:
            if not isinstance(body["qr"], str):
                raise CardProblem(problems.BAD_REQUEST, "'qr' must be a string")
            claims = self.qr.verify(body["qr"])
            card_no = claims.card_no
            now_us = to_us(self.clock())
            if now_us >= claims.expires * 1_000_000:  # expired since verify: never record it
                raise CardProblem(problems.QR_EXPIRED, "the QR token has expired; show a fresh one")
            with self.registry.transaction(write=True) as tx:
                card = self._card(tx, card_no)
                fresh = tx.use_qr(claims.jti, card_no, now_us, claims.expires * 1_000_000)
                if now_us >= self._next_prune_us:
                    self._next_prune_us = now_us + QR_PRUNE_INTERVAL_US
                    tx.prune_qr(now_us - QR_PRUNE_GRACE_US)
            if not fresh:
                self._audit(
                    ctx,
                    action,
                    self._enterprise_or_none(ctx, card.person.patient),
                    card_no,
                    outcome="refused",
                )
                raise CardProblem(problems.QR_REUSED, "this QR token has been used; show a new one")
        else:
            card_no = parse_card_number(body["card_no"])
            with self.registry.transaction(write=False) as tx:
                card = self._card(tx, card_no)
        self._refuse_unusable(ctx, card, action)
        return Identified(card, self._patient_of(ctx, card))

    def access_log(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        """Who accessed the resident's record, when and why (a fresh QR token proves the
        resident is asking; the reader needs ``card.identify``)."""
        require(ctx, "card.identify")
        if not isinstance(body, dict) or body.get("qr") is None:
            raise CardProblem(problems.BAD_REQUEST, "the access log needs a fresh 'qr' token")
        found = self.presented(ctx, {"qr": body["qr"]}, "card.access-log")
        _, _, pid = found.patient.partition("/")
        resident = dataclasses.replace(ctx, scopes=Scopes(f"{ctx.scopes.raw} access-log"))
        entries = self.exchange.access_log(resident, pid)
        return {"patient": found.patient, "entries": [e.as_json() for e in entries]}

    def identify(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        require(ctx, "card.identify")
        want = body.get("summary", False) if isinstance(body, dict) else False
        if not isinstance(want, bool):
            raise CardProblem(problems.BAD_REQUEST, "'summary' must be true or false")
        if want:
            summary_allowed(ctx)  # before a QR token is spent
        found = self.presented(ctx, body, "card.identify")
        self._audit(ctx, "card.identify", found.patient, found.card.card_no)
        out = {
            "card_no": found.card.card_no,
            "status": found.card.status,
            "patient": found.patient,
            "holder": self.holder_view(found.card.person),
        }
        if want:
            _, _, pid = found.patient.partition("/")
            out["summary"] = shared_summary(self.exchange, ctx, self.exchange.person_patients(pid))
        return out

    def check_in(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        require(ctx, "card.identify")
        org = organization_of(ctx)
        found = self.presented(ctx, body, "card.check-in")
        now = self.clock()
        encounter = {
            "resourceType": "Encounter",
            "status": "arrived",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "subject": {"reference": found.patient},
            "serviceProvider": {"reference": org},
            "period": {"start": now.isoformat()},
        }
        written = self.exchange.create(self._writer(ctx), "Encounter", encounter)
        encounter_ref = f"Encounter/{written.stored.id}"
        grant = self.exchange.record_grant(
            ctx,
            Grant(
                patient=found.patient,
                organization=org,
                purpose=TREATMENT,
                start=now,
                end=now + self.grant_period,
                basis=CARD_PRESENTED,
                evidence=encounter_ref,
                recorded_by=ctx.actor,
            ),
        )
        self._audit(ctx, "card.check-in", found.patient, found.card.card_no)
        return {
            "card_no": found.card.card_no,
            "patient": found.patient,
            "encounter": encounter_ref,
            "grant": {
                "organization": org,
                "purpose": grant.purpose,
                "basis": grant.basis,
                "start": grant.start.isoformat(),
                "end": grant.end.isoformat(),
            },
        }

    # -- the resident's consents (issue 7) ------------------------------------------

    def _consent_reader(self, ctx: RequestContext) -> RequestContext:
        """The resident, proven present by their QR token, acting on their own Consents:
        every Consent about them, whichever organisation recorded it (so administration
        for the exchange: no organisation). The reader stays the audited actor."""
        return dataclasses.replace(
            ctx, organization=None, purpose=_PATIENT_REQUEST, reason=None, scopes=_CONSENT_SCOPES
        )

    def _resident(self, ctx: RequestContext, body: Any, action: str) -> Identified:
        require(ctx, "card.consent")
        if not isinstance(body, dict) or not isinstance(body.get("qr"), str):
            raise CardProblem(problems.BAD_REQUEST, "a fresh 'qr' token of the card is required")
        return self.presented(ctx, {"qr": body["qr"]}, action)

    def _audit_consent(
        self, ctx: RequestContext, action: str, found: Identified, consent: str | None, what: str
    ) -> None:
        _, _, cid = (consent or "").partition("/")
        self.exchange.record(
            ctx,
            action,
            resource_type="Consent" if cid else None,
            resource_id=cid or None,
            query=f"card_no={found.card.card_no}&{what}",
            patients=[found.patient],
        )

    def record_consent(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        """``POST /consents``: record a Consent (``action``) or withdraw one (``withdraw``)."""
        if isinstance(body, dict) and "withdraw" in body:
            return self.withdraw_consent(ctx, body)
        if isinstance(body, dict) and "qr" in body:
            # Checked before the token is spent, so a typo does not cost the resident one.
            consent_body(
                {k: v for k, v in body.items() if k != "qr"},
                patient="Patient/x",
                now=self.clock(),
                types=self.exchange.resource_types,
            )
        found = self._resident(ctx, body, "card.consent-record")
        resource = consent_body(
            {k: v for k, v in body.items() if k != "qr"},
            patient=found.patient,
            now=self.clock(),
            types=self.exchange.resource_types,
        )
        # Held by the card authority, like the card-source Patient.
        recorder = dataclasses.replace(
            self._registrar(ctx), purpose=_PATIENT_REQUEST, reason=None, scopes=_CONSENT_SCOPES
        )
        written = self.exchange.create(recorder, "Consent", resource)
        stored = written.stored
        view = consent_view(orjson.loads(stored.content), stored.version)
        self._audit_consent(
            ctx, "card.consent-record", found, view["consent"], f"action={view['action']}"
        )
        return {"patient": found.patient, **view}

    def withdraw_consent(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        """Withdraw one of the resident's Consents: a new version with status inactive,
        in force from the next request (consent decisions read Consents, never a cache)."""
        cid = consent_id(body.get("withdraw") if isinstance(body, dict) else None)
        if set(body) - {"qr", "withdraw"}:
            raise CardProblem(problems.BAD_REQUEST, "withdraw takes only 'qr' and 'withdraw'")
        found = self._resident(ctx, body, "card.consent-withdraw")
        reader = self._consent_reader(ctx)
        mine = self._person_patients(found.patient)
        try:
            stored = self.exchange.read(reader, "Consent", cid)
        except NotFound:
            stored = None
        resource = orjson.loads(stored.content) if stored is not None else {}
        if (resource.get("patient") or {}).get("reference") not in mine:
            self._audit_consent(ctx, "card.consent-withdraw", found, None, f"consent={cid}")
            raise CardProblem(problems.CONSENT_NOT_FOUND, f"the resident has no Consent/{cid}")
        assert stored is not None
        if resource.get("status") != "active":
            raise CardProblem(
                problems.CONSENT_NOT_ACTIVE,
                f"Consent/{cid} is {resource.get('status')}, not active",
                consent_status=resource.get("status"),
            )
        resource["status"] = "inactive"
        written = self.exchange.update(reader, "Consent", cid, resource, if_match=stored.version)
        self._audit_consent(ctx, "card.consent-withdraw", found, f"Consent/{cid}", "withdraw")
        view = consent_view(orjson.loads(written.stored.content), written.stored.version)
        return {"patient": found.patient, **view}

    def list_consents(self, ctx: RequestContext, qr: str | None) -> dict[str, Any]:
        """``GET /consents?qr=``: every Consent about the resident, newest first."""
        found = self._resident(ctx, {"qr": qr}, "card.consents")
        refs = ",".join(sorted(self._person_patients(found.patient)))
        result = self.exchange.search(
            self._consent_reader(ctx),
            "Consent",
            [("patient", refs), ("_sort", "-_lastUpdated"), ("_count", "100")],
        )
        self._audit_consent(ctx, "card.consents", found, None, "list")
        return {
            "patient": found.patient,
            "consents": [consent_view(orjson.loads(s.content), s.version) for s in result.entries],
        }

    def _person_patients(self, patient: str) -> set[str]:
        """The enterprise Patient and the source Patients linked to it, as references."""
        _, _, pid = patient.partition("/")
        return {f"Patient/{p}" for p in self.exchange.person_patients(pid)}

    # -- key rotation -------------------------------------------------------------

    def rewrap(self, *, batch: int = 1000, progress: Callable[[int], None] | None = None) -> int:
        """Re-seal and re-index the holders' secrets under the current keys (after
        ``hie keys rotate``); rows already current are skipped, so a run can be repeated.
        Returns how many people were rewritten."""
        changed, after = 0, 0
        while True:
            with self.registry.transaction(write=True) as tx:
                rows = tx.people_secrets(after, batch)
                for pid, rid_enc, rid_idx, phone_enc, phone_idx in rows:
                    values = self._resealed(rid_enc, rid_idx, phone_enc, phone_idx)
                    if values:
                        tx.set_secrets(pid, values)
                        changed += 1
            if not rows:
                return changed
            after = rows[-1][0]
            if progress is not None:
                progress(len(rows))

    def _resealed(
        self, rid_enc: str, rid_idx: str, phone_enc: str | None, phone_idx: str | None
    ) -> dict[str, str | None]:
        values: dict[str, str | None] = {}
        fields: list[tuple[str, bytes, str, str | None]] = [
            ("resident_id", RID_CONTEXT, rid_enc, rid_idx)
        ]
        if phone_enc is not None:
            fields.append(("phone", PHONE_CONTEXT, phone_enc, phone_idx))
        for kind, context, sealed, index in fields:
            if self.cipher.is_current(sealed) and (index is None or self.blind.is_current(index)):
                continue
            plain = self.cipher.decrypt(sealed, context)
            values[f"{kind}_enc"] = self.cipher.encrypt(plain, context)
            values[f"{kind}_idx"] = self.blind.value(kind, plain)
        return values

    # -- identity backbone ------------------------------------------------------

    def verify_identity(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        require(ctx, "card.identity")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise CardProblem(problems.BAD_REQUEST, "send {resident_id, name}")
        rid = parse_resident_id(body.get("resident_id"), self.clock().date())
        with self.registry.transaction(write=False) as tx:
            person = tx.person_by_index(self.blind.lookup_values("resident_id", rid.number))
            latest = tx.latest_card(person.id) if person else None
        match = (
            person is not None
            and latest is not None
            and latest.status != "cancelled"
            and person.name == clean_name(body["name"])
        )
        self._audit(ctx, "card.verify", None, None, outcome="success" if match else "no-match")
        return {"match": match}

    def resolve(self, ctx: RequestContext, card_no: str | None, rid: str | None) -> dict[str, Any]:
        require(ctx, "card.identity")
        org = organization_of(ctx)
        if (card_no is None) == (rid is None):
            raise CardProblem(problems.BAD_REQUEST, "give exactly one of card_no and resident_id")
        with self.registry.transaction(write=False) as tx:
            if card_no is not None:
                card = tx.card(parse_card_number(card_no))
                if card is None:
                    raise CardProblem(problems.PERSON_NOT_FOUND, "no card holder with this card")
                if card.status in ("lost", "replaced"):
                    raise CardProblem(STATUS_PROBLEMS[card.status], f"card is {card.status}")
                person = card.person
                latest = tx.latest_card(person.id)
            else:
                number = parse_resident_id(rid, self.clock().date()).number
                found = tx.person_by_index(self.blind.lookup_values("resident_id", number))
                if found is None:
                    raise CardProblem(problems.PERSON_NOT_FOUND, "no card holder with this ID")
                person = found
                latest = tx.latest_card(person.id)
        if latest is None or latest.status == "cancelled":
            self._audit(
                ctx,
                "card.resolve",
                self._enterprise_or_none(ctx, person.patient),
                None,
                outcome="refused",
            )
            raise CardProblem(
                problems.PERSON_CANCELLED, "the person's card is cancelled; no pseudonym is given"
            )
        number = self.cipher.decrypt(person.resident_id_enc, RID_CONTEXT)
        self._audit(ctx, "card.resolve", self._enterprise_or_none(ctx, person.patient), None)
        return {"pseudonym": self.pseudonyms.of(org, number), "organization": org}


_PAST = {
    "report-loss": "reported lost",
    "replace": "replaced",
    "cancel": "cancelled",
    "freeze": "frozen",
    "unfreeze": "unfrozen",
}
