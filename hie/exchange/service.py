"""The exchange's service API: the one way to storage for every way in.

Each call: checks the caller's scopes, validates what it writes, asks the decision
point, runs one unit of work, and hands a record of the access to the audit sink.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from hie.audit.event import Access as Audited
from hie.audit.event import AuditBuilder, Outcome, patients_in, patients_in_query
from hie.audit.sink import AuditSink
from hie.consent.decision import Access, Decide, Decision
from hie.consent.grants import Grant, GrantStore, MemoryGrantStore
from hie.consent.point import ConsentPoint
from hie.consent.rules import ResourceFacts
from hie.consent.shapes import ShapeIndexer
from hie.context import Interaction, RequestContext
from hie.errors import (
    BadRequest,
    FhirError,
    Forbidden,
    Gone,
    InvalidSearch,
    Issue,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from hie.exchange.auditing import AUDIT_TYPE, AccessLogEntry, AuditTrail
from hie.exchange.consenting import ConsentFacts
from hie.exchange.identity_api import IdentityOperations
from hie.exchange.mpi import MasterPatientIndex, Writes
from hie.exchange.ports import Clock, IdFactory, Validator, VisibilityPolicy, see_everything
from hie.exchange.protection import BytesSealer, Protection
from hie.exchange.results import HistoryResult, SearchResult, WriteResult
from hie.exchange.searching import Searcher
from hie.exchange.transaction import BundleProcessor
from hie.exchange.writes import Writer
from hie.fhir import bundles
from hie.fhir.bundles import page_url
from hie.fhir.canonical import ID_PATTERN, parse_instant
from hie.search.extract import Extractor
from hie.search.params import QueryParser
from hie.storage.ports import (
    AuditFailure,
    AuditLog,
    HistoryQuery,
    SearchRequest,
    Store,
    StoredResource,
    UnitOfWork,
    Visibility,
)

_CHANGES = frozenset({Interaction.CREATE, Interaction.UPDATE, Interaction.DELETE})


def _known_id(resource_type: str, id_: str) -> None:
    """A malformed id (a NUL, a slash...) names nothing: say so before asking storage."""
    if not ID_PATTERN.match(id_):
        raise NotFound(f"{resource_type}/{id_!r} is not known")


def _printable(text: str | None) -> str | None:
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


def _query_text(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{n}={v}" for n, v in params)


class _FailClosed:
    """The store, with a unit of work whose audit records fail to commit refused (503)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.lookup = store.lookup
        self.close = store.close

    @contextmanager
    def unit_of_work(self, *, write: bool) -> Iterator[UnitOfWork]:
        try:
            with self._store.unit_of_work(write=write) as uow:
                yield uow
        except AuditFailure as exc:
            raise Unavailable("the access could not be audited, so it was refused") from exc


P = ParamSpec("P")
R = TypeVar("R")
# A search names at most this many patients in its audit record (from its results).
_MAX_AUDITED_PATIENTS = 100


def audits_failure(
    subtype: str,
) -> Callable[
    [Callable[Concatenate[Exchange, RequestContext, P], R]],
    Callable[Concatenate[Exchange, RequestContext, P], R],
]:
    """Record a refused or failed access too (outcome 4), then let the error through."""

    def wrap(
        method: Callable[Concatenate[Exchange, RequestContext, P], R],
    ) -> Callable[Concatenate[Exchange, RequestContext, P], R]:
        @functools.wraps(method)
        def inner(self: Exchange, ctx: RequestContext, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, ctx, *args, **kwargs)
            except Unavailable:
                raise
            except FhirError as exc:
                self.record_failure(ctx, subtype, [a for a in args if isinstance(a, str)], exc)
                raise

        return inner

    return wrap


class Exchange:
    def __init__(
        self,
        *,
        store: Store,
        validator: Validator,
        extractor: Extractor,
        decide: Decide,
        audit: AuditSink,
        clock: Clock,
        new_id: IdFactory,
        resource_types: Collection[str],
        base_url: str,
        default_count: int = 50,
        max_count: int = 1000,
        visibility: VisibilityPolicy = see_everything,
        audit_log: AuditLog | None = None,
        audit_builder: AuditBuilder | None = None,
        grants: GrantStore | None = None,
        protection: Protection | None = None,
        mpi: MasterPatientIndex | None = None,
        consent: ConsentPoint | None = None,
    ) -> None:
        """``extractor`` indexes every write and defines what search can use;
        ``visibility`` is the consent seam for searches (see ``hie.exchange.ports``);
        ``protection`` seals resident ID and phone numbers; ``mpi`` links every source
        Patient to an enterprise Patient (``hie.exchange.mpi``; it needs ``protection``);
        ``consent``, when given, decides every read and search (``hie.consent.point``)."""
        self._consent = consent
        self.base_url = base_url.rstrip("/")
        self.new_id = new_id
        self._store: Store = _FailClosed(store)
        self._validator = validator
        self._decide = decide
        self._audit = audit
        self._auditor = audit_builder or AuditBuilder(clock=clock)
        self.audit_trail = (
            AuditTrail(
                audit_log,
                default_count=default_count,
                max_count=max_count,
                organization_name=self._organization_name,
                before_read=audit.drain,
            )
            if audit_log is not None
            else None
        )
        self._clock = clock
        self.resource_types = frozenset(resource_types)
        self._default_count = default_count
        self._max_count = max_count
        self._indexer = ShapeIndexer(extractor)
        self._visibility = visibility
        self.grants: GrantStore = grants if grants is not None else MemoryGrantStore()
        self._unindexed = extractor.unindexed()
        parser = QueryParser(
            extractor.registry,
            local_bases=[self.base_url],
            max_count=max_count,
            unindexed=self._unindexed,
        )
        self._search = Searcher(
            parser=parser,
            base_url=self.base_url,
            clock=clock,
            default_count=default_count,
            max_count=max_count,
        )
        # -- identity: protected numbers and the master patient index
        self._protection = protection
        self.protection = protection
        conditions = self._search.condition
        if protection is not None:
            conditions = self._protected_conditions
            self._writer = Writer(
                indexer=self._indexer,
                conditions=conditions,
                clock=clock,
                new_id=new_id,
                seal=protection.seal,
                plain=protection.plain,
                guard=self._guard_write,
            )
        else:
            self._writer = Writer(
                indexer=self._indexer,
                conditions=conditions,
                clock=clock,
                new_id=new_id,
                guard=self._guard_write,
            )
        self._mpi = mpi
        self.identity: IdentityOperations | None = None
        if mpi is not None and protection is not None:
            writes = Writes(lambda uow, ctx, body, id_: self._writer.update(uow, ctx, body, id_))
            self._writer.observe(
                lambda uow, ctx, t, id_, body: mpi.observe(uow, ctx, writes, t, id_, body)
            )
            self.identity = IdentityOperations(
                self, store, mpi, protection, writes, self._writer.match
            )

    def _protected_conditions(self, resource_type: str, params: Sequence[tuple[str, str]]) -> Any:
        assert self._protection is not None
        return self._search.condition(
            resource_type, self._protection.search_params(resource_type, params)
        )

    def _params(
        self, resource_type: str, params: Sequence[tuple[str, str]]
    ) -> Sequence[tuple[str, str]]:
        if self._protection is None:
            return params
        return self._protection.search_params(resource_type, params)

    def raw_sealer(self, purpose: str) -> BytesSealer | None:
        """Seals an adapter's raw copies of messages (the HL7 inbox) with the exchange's
        keys; None when protection is off."""
        if self._protection is None:
            return None
        return BytesSealer(self._protection, purpose.encode("utf-8"))

    def reveal(self, ctx: RequestContext, stored: StoredResource) -> StoredResource:
        """The stored resource with protected numbers opened (masked unless the caller's
        token holds ``hie.identity.unmasked``)."""
        if self._protection is None:
            return stored
        return self._protection.reveal(ctx, stored)

    def _revealed(self, ctx: RequestContext, result: WriteResult) -> WriteResult:
        return WriteResult(self.reveal(ctx, result.stored), result.status)

    def enterprise_of(self, ctx: RequestContext, patient_ref: str) -> str:
        """``Patient/<enterprise id>`` for a source or enterprise Patient reference.

        Raises NotFound when the Patient is unknown to the index (or the caller may not
        read it). Stable API: the card service calls it.
        """
        if self.identity is None:
            raise NotFound("the master patient index is not enabled")
        return self.identity.enterprise_of(ctx, patient_ref)

    def search_parameters(self, resource_type: str) -> list[dict[str, str]]:
        """The search parameters this type supports, for the CapabilityStatement."""
        return self._search.parameters(resource_type, self._unindexed)

    def search_includes(self, resource_type: str) -> tuple[list[str], list[str]]:
        """``_include`` and ``_revinclude`` values this type supports."""
        return self._search.includes(resource_type)

    # -- the checks every call makes -------------------------------------------

    def check_type(self, resource_type: str) -> None:
        if resource_type not in self.resource_types:
            raise NotFound(f"resource type '{resource_type}' is not served here")

    def require(self, ctx: RequestContext, interaction: Interaction, resource_type: str) -> None:
        if not ctx.scopes.allows(interaction, resource_type):
            raise Forbidden(
                f"the access token's scopes do not allow '{interaction.value}' on {resource_type}"
            )
        if resource_type == "Consent" and interaction in _CHANGES and self._consent is not None:
            # Otherwise any client could write itself a permit.
            scope = self._consent.policy.recorder_scope
            if ctx.organization is not None and not ctx.scopes.has(scope):
                raise Forbidden(f"recording or withdrawing a Consent needs the scope '{scope}'")

    def permitted(
        self,
        ctx: RequestContext,
        interaction: Interaction,
        stored: StoredResource,
        uow: UnitOfWork | None = None,
    ) -> bool:
        return self.decision(ctx, interaction, stored, uow).permit

    def decision(
        self,
        ctx: RequestContext,
        interaction: Interaction,
        stored: StoredResource,
        uow: UnitOfWork | None = None,
    ) -> Decision:
        """The one decision point for a stored resource (reads, history, DICOM, writes).

        The consent point answers most calls from the caller and the custodian alone;
        otherwise it reads the Consents and grants in force now (never cached), in
        ``uow`` or in a unit of work of its own.
        """
        consent = self._consent
        if consent is None:
            access = Access(interaction, stored.type, stored.id, stored.custodian)
            return self._decide(ctx, access)
        quick = consent.quick(ctx, stored.type, stored.custodian, self._clock())
        if quick is not None:
            return quick.decision
        content = orjson.loads(stored.content) if stored.content else {}
        facts = consent.facts_of(stored, self._indexer.extract(content) if content else [])
        derived = stored.custodian is None
        if uow is not None:
            return consent.decide(ctx, facts, ConsentFacts(uow), self._clock(), derived=derived)
        with self._store.unit_of_work(write=False) as own:
            return consent.decide(ctx, facts, ConsentFacts(own), self._clock(), derived=derived)

    def _hidden(self, message: str) -> FhirError:
        """What a caller is told about a resource it may not see."""
        if self._consent is not None and self._consent.policy.hidden_status == 403:
            return Forbidden("access to this resource is not permitted by the consent policy")
        return NotFound(message)

    def _guard_write(
        self, uow: UnitOfWork, ctx: RequestContext, current: StoredResource, conditional: bool
    ) -> None:
        """A write may only change (or a condition match) what the caller may see."""
        if self._consent is None or self.permitted(ctx, Interaction.READ, current, uow):
            return
        if conditional:
            raise PreconditionFailed("the condition matched a resource the caller may not see")
        raise self._hidden(f"{current.type}/{current.id} is not known")

    def visibility(self, ctx: RequestContext, uow: UnitOfWork) -> Visibility:
        """What ``ctx`` may see in searches, read now in ``uow``."""
        if self._consent is None:
            return self._visibility(ctx)
        return self._consent.visibility(ctx, ConsentFacts(uow), self._clock())

    def all_matching(
        self, uow: UnitOfWork, resource_type: str, params: Sequence[tuple[str, str]]
    ) -> list[StoredResource]:
        """Every current resource matching ``params``, unfiltered (the consent facts)."""
        query = self._search.condition(resource_type, params)
        out: list[StoredResource] = []
        cursor = None
        while True:
            request = SearchRequest(
                query=query, count=self._max_count, cursor=cursor, now=self._clock()
            )
            page = uow.search(request)
            out.extend(page.items)
            if page.next is None:
                return out
            cursor = page.next

    def _authorize_write(
        self, ctx: RequestContext, interaction: Interaction, resource_type: str
    ) -> None:
        self.check_type(resource_type)
        if resource_type == AUDIT_TYPE:
            raise Forbidden("AuditEvents are written by the exchange itself, never by clients")
        self.require(ctx, interaction, resource_type)
        if not self._decide(
            ctx, Access(interaction, resource_type, custodian=ctx.organization)
        ).permit:
            raise Forbidden(f"policy does not allow this write to {resource_type}")

    def record(
        self,
        ctx: RequestContext,
        action: str,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        query: str | None = None,
        outcome: Outcome | str = Outcome.SUCCESS,
        uow: UnitOfWork | None = None,
        stored: StoredResource | None = None,
        patients: Iterable[str] = (),
        kind: str = "rest",
        detail: str | None = None,
    ) -> None:
        """Audit one access (the builder API every way in uses, through the exchange).

        ``kind`` is the event type (rest, login, card, hl7v2, dicom, export, consent...);
        ``action`` its subtype. The patients are taken from ``stored`` when given.
        With ``uow`` the record commits with that unit of work; otherwise it is durable
        before this returns, and if it cannot be written the access is refused.
        """
        # What a caller sent may hold a NUL, which PostgreSQL text refuses: the record
        # keeps a visible stand-in rather than failing (and, fail-closed, refusing).
        resource_type, resource_id = _printable(resource_type), _printable(resource_id)
        query, detail = _printable(query), _printable(detail)
        found = {_printable(p) or "" for p in patients}
        if stored is not None and stored.content:
            found |= patients_in(stored.type, stored.id, stored.content)
        elif resource_type == "Patient" and resource_id:
            found.add(f"Patient/{resource_id}")
        entities = (f"{resource_type}/{resource_id}",) if resource_type and resource_id else ()
        if kind == "rest" and action.startswith("card."):
            kind = "card"  # the card service's operations (card.identify, card.qr...)
        elif kind == "rest" and action in ("token", "login", "logout"):
            kind = "login"  # OAuth grants and web UI sessions
        if not isinstance(outcome, Outcome):  # the plain words of the first sink's callers
            outcome = Outcome.SUCCESS if outcome in ("success", "0") else Outcome.MINOR
        record = self._auditor.build(
            ctx,
            Audited(
                subtype=action,
                type=kind,
                outcome=outcome,
                detail=detail,
                patients=found,
                entities=entities,
                query=query,
                description=resource_type if query is not None else None,
            ),
        )
        if uow is not None:
            self._audit.record_in(uow, [record])
        else:
            self._audit.record([record])

    def record_failure(
        self, ctx: RequestContext, action: str, args: Sequence[str], error: FhirError
    ) -> None:
        """Audit a refused or failed access (the error itself is the caller's to raise)."""
        rtype = args[0] if args and args[0] in self.resource_types else None
        rid = args[1] if rtype and len(args) > 1 else None
        if action == "everything" and args:
            rtype, rid = "Patient", args[0]
        self.record(
            ctx,
            action,
            resource_type=rtype,
            resource_id=rid,
            outcome=Outcome.MINOR if error.status < 500 else Outcome.SERIOUS,
            detail=f"{error.status} {error.message}",
        )

    def record_refusal(self, source: str | None, detail: str) -> None:
        """A request refused before it had a caller (no token, a bad or expired one)."""
        ctx = RequestContext(actor="anonymous", source=source)
        self.record(ctx, "authenticate", kind="login", outcome=Outcome.MINOR, detail=detail)

    def _organization_name(self, reference: str) -> str | None:
        kind, _, id_ = reference.partition("/")
        stored = self._store.lookup(kind, id_) if kind == "Organization" and id_ else None
        if stored is None or stored.deleted:
            return None
        name = orjson.loads(stored.content).get("name")
        return name if isinstance(name, str) else None

    # -- the audit trail -----------------------------------------------------------

    def _trail(self) -> AuditTrail:
        if self.audit_trail is None:
            raise NotFound("this exchange keeps no searchable audit trail")
        return self.audit_trail

    def access_log(
        self, ctx: RequestContext, patient_id: str, *, count: int = 100
    ) -> list[AccessLogEntry]:
        """Who accessed a resident's record, when and why, in plain language (zh and en).

        The caller must have established that the resident is asking (the card service's
        QR token) and hold the ``access-log`` scope, or a scope that reads AuditEvent.
        """
        if not (
            ctx.scopes.has("access-log") or ctx.scopes.names_type(Interaction.SEARCH, AUDIT_TYPE)
        ):
            raise Forbidden("the access log needs the 'access-log' scope")
        trail = self._trail()
        with self._store.unit_of_work(write=False) as uow:
            patients = {f"Patient/{p}" for p in self.patient_ids(uow, ctx, patient_id)}
        entries = trail.access_log(patients, count=count)
        self.record(ctx, "access-log", kind="card", patients=patients)
        return entries

    def validated(
        self, resource: Any, resource_type: str | None = None, id_: str | None = None
    ) -> dict[str, Any]:
        """The resource checked against the URL it was sent to and against FHIR R4."""
        if resource_type is not None:
            self.check_type(resource_type)
        if not isinstance(resource, dict):
            raise BadRequest("the body must be a JSON object holding a FHIR resource")
        actual = resource.get("resourceType")
        if resource_type is not None and actual != resource_type:
            raise BadRequest.at(
                f"the body holds resourceType '{actual}' but was sent to {resource_type}",
                "resourceType",
            )
        if isinstance(actual, str):
            self.check_type(actual)
        if id_ is not None and resource.get("id") != id_:
            raise BadRequest.at(
                f"the body's id '{resource.get('id')}' does not match the URL id '{id_}'",
                f"{actual}.id",
            )
        self._validator.check(resource)
        return resource

    # -- single resources ---------------------------------------------------------

    @audits_failure("create")
    def create(
        self,
        ctx: RequestContext,
        resource_type: str,
        resource: Any,
        *,
        if_none_exist: Sequence[tuple[str, str]] | None = None,
    ) -> WriteResult:
        body = self.validated(resource, resource_type)
        body.pop("id", None)  # the server assigns ids on create
        self._authorize_write(ctx, Interaction.CREATE, resource_type)
        if if_none_exist:
            self.require(ctx, Interaction.SEARCH, resource_type)
        with self._store.unit_of_work(write=True) as uow:
            if if_none_exist:
                written = self._writer.conditional_create(uow, ctx, body, if_none_exist)
            else:
                written = self._writer.create(uow, ctx, body)
            self.record(
                ctx,
                "create",
                resource_type=resource_type,
                resource_id=written.stored.id,
                uow=uow,
                stored=written.stored,
            )
        return self._revealed(ctx, WriteResult(written.stored, written.status))

    # Reads audit after their unit of work has ended: a request must not hold a pooled
    # connection while it waits for the audit writer, which needs one too.

    @audits_failure("read")
    def read(self, ctx: RequestContext, resource_type: str, id_: str) -> StoredResource:
        if resource_type == AUDIT_TYPE:
            stored = self._trail().read(ctx, id_)
        else:
            stored = self._checked_read(ctx, resource_type, id_, None, self._store.lookup)
        self.record(ctx, "read", resource_type=resource_type, resource_id=id_, stored=stored)
        return self.reveal(ctx, stored)

    @audits_failure("vread")
    def vread(
        self, ctx: RequestContext, resource_type: str, id_: str, version: str
    ) -> StoredResource:
        if resource_type == AUDIT_TYPE:
            if version != "1":
                raise NotFound(f"AuditEvent/{id_} has no version '{version}'")
            stored = self._trail().read(ctx, id_)
        else:
            stored = self._checked_read(ctx, resource_type, id_, version, self._store.lookup)
        self.record(ctx, "vread", resource_type=resource_type, resource_id=id_, stored=stored)
        return self.reveal(ctx, stored)

    def read_in(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        resource_type: str,
        id_: str,
        version: str | None = None,
        *,
        audit_uow: UnitOfWork | None = None,
    ) -> StoredResource:
        """read (or vread, with ``version``) inside a unit of work; audited in ``audit_uow``."""

        def lookup(t: str, i: str, v: int | None) -> StoredResource | None:
            return uow.get(t, i) if v is None else uow.get_version(t, i, v)

        stored = self._checked_read(ctx, resource_type, id_, version, lookup, uow)
        if audit_uow is not None:
            action = "read" if version is None else "vread"
            self.record(
                ctx,
                action,
                resource_type=resource_type,
                resource_id=id_,
                uow=audit_uow,
                stored=stored,
            )
        return self.reveal(ctx, stored)

    def _checked_read(
        self,
        ctx: RequestContext,
        resource_type: str,
        id_: str,
        version: str | None,
        lookup: Callable[[str, str, int | None], StoredResource | None],
        uow: UnitOfWork | None = None,
    ) -> StoredResource:
        self.check_type(resource_type)
        self.require(ctx, Interaction.READ, resource_type)
        _known_id(resource_type, id_)
        hidden = False
        if version is None:
            stored = lookup(resource_type, id_, None)
            missing = f"{resource_type}/{id_} is not known"
        elif version.isdigit():
            stored = lookup(resource_type, id_, int(version))
            missing = f"{resource_type}/{id_} has no version '{version}'"
        else:
            raise NotFound(f"{resource_type}/{id_} has no version '{version}'")
        if stored is None:
            raise NotFound(missing)
        if self._consent is not None and version is not None:
            # A version is decided as the resource is now: withdrawn access covers history.
            current = lookup(resource_type, id_, None)
            hidden = current is None or not self.permitted(ctx, Interaction.READ, current, uow)
        if hidden or not self.permitted(ctx, Interaction.READ, stored, uow):
            raise self._hidden(missing)
        if stored.deleted:
            raise Gone(
                f"{resource_type}/{id_} was deleted"
                if version is None
                else f"version {version} of {resource_type}/{id_} is a deletion",
                headers={"ETag": f'W/"{stored.version}"'},
            )
        return stored

    @audits_failure("update")
    def update(
        self,
        ctx: RequestContext,
        resource_type: str,
        id_: str,
        resource: Any,
        *,
        if_match: int | None = None,
    ) -> WriteResult:
        if not ID_PATTERN.match(id_):
            raise BadRequest(f"'{id_}' is not a valid FHIR id")
        body = self.validated(resource, resource_type, id_)
        self._authorize_write(ctx, Interaction.UPDATE, resource_type)
        with self._store.unit_of_work(write=True) as uow:
            written = self._writer.update(uow, ctx, body, id_, if_match=if_match)
            self.record(
                ctx,
                "update",
                resource_type=resource_type,
                resource_id=id_,
                uow=uow,
                stored=written.stored,
            )
        return self._revealed(ctx, WriteResult(written.stored, written.status))

    @audits_failure("update")
    def conditional_update(
        self,
        ctx: RequestContext,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        resource: Any,
        *,
        if_match: int | None = None,
    ) -> WriteResult:
        body = self.validated(resource, resource_type)
        self._authorize_write(ctx, Interaction.UPDATE, resource_type)
        self.require(ctx, Interaction.SEARCH, resource_type)
        with self._store.unit_of_work(write=True) as uow:
            written = self._writer.conditional_update(uow, ctx, body, params, if_match=if_match)
            self.record(
                ctx,
                "update",
                resource_type=resource_type,
                resource_id=written.stored.id,
                query=_query_text(self._params(resource_type, params)),
                uow=uow,
                stored=written.stored,
            )
        return self._revealed(ctx, WriteResult(written.stored, written.status))

    @audits_failure("patch")
    def patch(
        self,
        ctx: RequestContext,
        resource_type: str,
        id_: str,
        operations: Any,
        *,
        if_match: int | None = None,
    ) -> WriteResult:
        self._authorize_write(ctx, Interaction.UPDATE, resource_type)
        _known_id(resource_type, id_)
        with self._store.unit_of_work(write=True) as uow:
            result, version = self._writer.patched(
                uow, resource_type, id_, operations, if_match=if_match
            )
            body = self.validated(result, resource_type, id_)
            written = self._writer.update(uow, ctx, body, id_, if_match=version, method="PATCH")
            self.record(
                ctx,
                "patch",
                resource_type=resource_type,
                resource_id=id_,
                uow=uow,
                stored=written.stored,
            )
        return self._revealed(ctx, WriteResult(written.stored, 200))

    def conditional_patch(
        self,
        ctx: RequestContext,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        operations: Any,
        *,
        if_match: int | None = None,
    ) -> WriteResult:
        self.check_type(resource_type)
        self.require(ctx, Interaction.SEARCH, resource_type)
        with self._store.unit_of_work(write=False) as uow:
            match = self._writer.match_one(uow, resource_type, params)
        if match is None:
            query = _query_text(self._params(resource_type, params))
            raise NotFound(f"no {resource_type} matches '{query}'")
        return self.patch(ctx, resource_type, match.id, operations, if_match=if_match)

    @audits_failure("delete")
    def delete(self, ctx: RequestContext, resource_type: str, id_: str) -> WriteResult:
        self._authorize_write(ctx, Interaction.DELETE, resource_type)
        _known_id(resource_type, id_)
        with self._store.unit_of_work(write=True) as uow:
            written = self._writer.delete(uow, ctx, resource_type, id_)
            self.record(ctx, "delete", resource_type=resource_type, resource_id=id_, uow=uow)
        return WriteResult(written.stored, written.status)

    @audits_failure("delete")
    def conditional_delete(
        self, ctx: RequestContext, resource_type: str, params: Sequence[tuple[str, str]]
    ) -> WriteResult | None:
        """Delete the single match; None when nothing matches (which is not an error)."""
        self._authorize_write(ctx, Interaction.DELETE, resource_type)
        self.require(ctx, Interaction.SEARCH, resource_type)
        with self._store.unit_of_work(write=True) as uow:
            match = self._writer.match_one(uow, resource_type, params)
            if match is None:
                return None
            self._guard_write(uow, ctx, match, True)
            written = self._writer.delete(uow, ctx, resource_type, match.id)
            self.record(
                ctx,
                "delete",
                resource_type=resource_type,
                resource_id=match.id,
                query=_query_text(self._params(resource_type, params)),
                uow=uow,
            )
        return self._revealed(ctx, WriteResult(written.stored, written.status))

    # -- search and history -----------------------------------------------------

    @audits_failure("search")
    def search(
        self,
        ctx: RequestContext,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
    ) -> SearchResult:
        if resource_type == AUDIT_TYPE:
            result = self._trail().search(ctx, params)
        else:
            with self._store.unit_of_work(write=False) as uow:
                result = self.search_in(uow, ctx, resource_type, params, strict=strict)
        self.record(
            ctx,
            "search",
            resource_type=resource_type,
            query=_query_text(self._params(resource_type, params)),
            patients=self._searched_patients(resource_type, params, result),
        )
        return result

    @staticmethod
    def _searched_patients(
        resource_type: str, params: Sequence[tuple[str, str]], result: SearchResult
    ) -> set[str]:
        """The patients a search is about: those it names and those whose records it returns."""
        found = patients_in_query(resource_type, params)
        if resource_type == AUDIT_TYPE:
            return found
        for s in (*result.entries, *result.included):
            if len(found) >= _MAX_AUDITED_PATIENTS:
                break
            found |= patients_in(s.type, s.id, s.content)
        return found

    def search_in(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
        audit_uow: UnitOfWork | None = None,
        compartment: tuple[str, str] | None = None,
    ) -> SearchResult:
        """A search; ``compartment`` ``("Patient", id)`` searches within that compartment."""
        params = self._params(resource_type, params)
        self.check_type(resource_type)
        self.require(ctx, Interaction.SEARCH, resource_type)
        prepared = self._search.prepare(resource_type, params, strict=strict)
        path = resource_type
        where = None
        if compartment is not None:
            kind, owner = compartment
            if kind != "Patient":
                raise NotFound(f"compartment '{kind}' is not supported; only Patient is")
            if not self._search.in_patient_compartment(resource_type):
                raise InvalidSearch(f"{resource_type} is not in the Patient compartment")
            self.read_in(uow, ctx, "Patient", owner, audit_uow=audit_uow)
            where = self._search.compartment(self.patient_ids(uow, ctx, owner))
            path = f"Patient/{owner}/{resource_type}"
        request = self._search.request(prepared, self.visibility(ctx, uow), where)
        if request.visibility.restricted and request.estimate:
            # A planner estimate counts from table statistics: give the exact visible count.
            request = replace(request, estimate=False)
        try:
            page = uow.search(request)
        except ValueError as exc:  # a cursor from another query
            raise InvalidSearch(f"Invalid search parameter '_cursor': {exc}") from exc
        items = page.items
        if self._consent is None:  # with consent, the store's filter is the decision
            items = [s for s in items if self.permitted(ctx, Interaction.SEARCH, s)]
        items = [self.reveal(ctx, s) for s in items]
        included = [self.reveal(ctx, s) for s in page.included if self._readable(ctx, s)]
        result = self._search.result(
            resource_type,
            path,
            prepared.echo,
            prepared.warnings,
            page,
            items,
            included,
            prepared.query,
        )
        if audit_uow is not None:
            self.record(
                ctx,
                "search",
                resource_type=resource_type,
                query=_query_text(self._params(resource_type, params)),
                uow=audit_uow,
                patients=self._searched_patients(resource_type, params, result),
            )
        return result

    def _readable(self, ctx: RequestContext, stored: StoredResource) -> bool:
        """Whether an included resource may be shown: the scopes allow reading its type."""
        if not ctx.scopes.allows(Interaction.READ, stored.type):
            return False
        return self._consent is not None or self.permitted(ctx, Interaction.READ, stored)

    def patient_ids(self, uow: UnitOfWork, ctx: RequestContext, patient_id: str) -> set[str]:
        """The source patients whose records stand for ``patient_id`` in compartment
        searches and ``$everything``: an enterprise Patient stands for itself and every
        source Patient linked to it."""
        if self._mpi is None:
            return {patient_id}
        return {patient_id} | {m.source_id for m in self._mpi.members(uow, patient_id)}

    def person_patients(self, patient_id: str) -> set[str]:
        """The Patient ids that stand for one person: ``patient_id`` and, for an
        enterprise Patient, every source Patient linked to it (ids only, no content)."""
        with self._store.unit_of_work(write=False) as uow:
            return self.patient_ids(uow, RequestContext.system(), patient_id)

    @audits_failure("search")
    def compartment_search(
        self,
        ctx: RequestContext,
        patient_id: str,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
    ) -> SearchResult:
        """``GET Patient/[id]/[type]?params``."""
        with self._store.unit_of_work(write=False) as uow:
            result = self.search_in(
                uow, ctx, resource_type, params, strict=strict, compartment=("Patient", patient_id)
            )
        patients = self._searched_patients(resource_type, params, result)
        patients.add(f"Patient/{patient_id}")
        self.record(
            ctx,
            "search",
            resource_type=resource_type,
            query=_query_text(self._params(resource_type, params)),
            patients=patients,
        )
        return result

    @audits_failure("everything")
    def everything(
        self,
        ctx: RequestContext,
        patient_id: str,
        params: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
    ) -> SearchResult:
        """``Patient/[id]/$everything``: the patient's compartment and what it refers to."""
        self.check_type("Patient")
        query, cursor, echo, warnings = self._search.prepare_everything(params, strict=strict)
        readable = None
        if not ctx.scopes.allows(Interaction.READ, "*"):
            readable = frozenset(
                t for t in self.resource_types if ctx.scopes.allows(Interaction.READ, t)
            )
        with self._store.unit_of_work(write=False) as uow:
            self.read_in(uow, ctx, "Patient", patient_id)
            compartment = self._search.compartment(self.patient_ids(uow, ctx, patient_id))
            request = self._search.everything_request(
                query, cursor, compartment, self.visibility(ctx, uow), readable
            )
            page = uow.everything(request)
        items = page.items
        if self._consent is None:
            items = [s for s in items if self.permitted(ctx, Interaction.READ, s)]
        items = [self.reveal(ctx, s) for s in items]
        self.record(
            ctx,
            "everything",
            resource_type="Patient",
            resource_id=patient_id,
            query=_query_text(params),
            patients={f"Patient/{patient_id}"},
        )
        return self._search.result(
            "Patient", f"Patient/{patient_id}/$everything", echo, warnings, page, items, []
        )

    def render_search(self, result: SearchResult) -> bytes:
        """The searchset Bundle, built from the stored bytes (shaped if asked)."""
        return self._search.render(result)

    def reindex(
        self,
        resource_type: str | None = None,
        *,
        batch: int = 500,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Rebuild the search index (after the definitions change); returns the count.

        ``progress(done, total)`` is called after each batch; each batch commits on its own.
        """
        if resource_type is not None:
            self.check_type(resource_type)
        with self._store.unit_of_work(write=False) as uow:
            total = uow.count(resource_type)
        done, after = 0, None
        while True:
            with self._store.unit_of_work(write=True) as uow:
                found = uow.scan(resource_type, after, batch)
                for key, stored in found:
                    uow.reindex(key, self._indexer.extract(orjson.loads(stored.content)))
            if not found:
                return done
            done += len(found)
            after = found[-1][0]
            if progress is not None:
                progress(done, max(total, done))

    def render_history(self, result: HistoryResult, path: str) -> bytes:
        next_url = None
        if result.next_cursor is not None:
            next_url = page_url(
                self.base_url, path, [*result.params, ("_cursor", result.next_cursor)]
            )
        return bundles.history(
            base=self.base_url,
            entries=result.entries,
            total=result.total,
            self_url=page_url(self.base_url, path, result.params),
            next_url=next_url,
        )

    def search_resources(
        self, ctx: RequestContext, resource_type: str, params: Sequence[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Search and parse every page (for adapters that need the resources themselves)."""
        out: list[dict[str, Any]] = []
        query = [p for p in params if p[0] != "_cursor"]
        while True:
            result = self.search(ctx, resource_type, query, strict=True)
            out.extend(orjson.loads(s.content) for s in result.entries)
            if result.next_cursor is None:
                return out
            query = [p for p in query if p[0] != "_cursor"] + [("_cursor", result.next_cursor)]

    @audits_failure("history")
    def history(
        self,
        ctx: RequestContext,
        resource_type: str | None,
        id_: str | None,
        params: Sequence[tuple[str, str]],
    ) -> HistoryResult:
        if resource_type is None:
            if not ctx.scopes.allows(Interaction.SEARCH, "*"):
                raise Forbidden("system history needs a scope that allows search on every type")
        else:
            self.check_type(resource_type)
            self.require(ctx, Interaction.READ if id_ else Interaction.SEARCH, resource_type)
            if id_ is not None:
                _known_id(resource_type, id_)
        since, count, before, echo = None, self._default_count, None, []
        for name, value in params:
            if name == "_since":
                try:
                    since = parse_instant(value)
                except BadRequest as exc:
                    raise InvalidSearch(f"parameter '_since': {exc.message}") from exc
                echo.append((name, value))
            elif name == "_count":
                if not value.isdigit():
                    raise InvalidSearch(f"parameter '_count' must be a whole number, not '{value}'")
                count = min(int(value), self._max_count)
                echo.append((name, value))
            elif name == "_cursor":
                if not value.isdigit():
                    raise InvalidSearch("parameter '_cursor' is not valid")
                before = int(value)
            elif name not in ("_format", "_pretty"):
                raise InvalidSearch(f"parameter '{name}' is not supported on history")
        query = HistoryQuery(
            type=resource_type, id=id_, since=since, count=count + 1, before_seq=before
        )
        total: int | None
        with self._store.unit_of_work(write=False) as uow:
            whole = id_ is not None
            if id_ is not None and resource_type is not None:
                current = uow.get(resource_type, id_)
                if current is None or not self.permitted(ctx, Interaction.READ, current, uow):
                    raise self._hidden(f"{resource_type}/{id_} is not known")
            everything = self._consent is None or self._consent.sees_everything(ctx, self._clock())
            if everything or whole:  # one resource's versions follow the current
                rows = uow.history(query)
                total = uow.count_history(query)
                if self._consent is None:
                    rows = [(q, s) for q, s in rows if self.permitted(ctx, Interaction.READ, s)]
            else:
                rows, total = self._visible_history(uow, ctx, query, count)
        more = len(rows) > count
        rows = rows[:count]
        patients: set[str] = set()
        for _, s in rows:
            if len(patients) >= _MAX_AUDITED_PATIENTS:
                break
            patients |= patients_in(s.type, s.id, s.content)
        rows = [(seq, self.reveal(ctx, s)) for seq, s in rows]
        self.record(
            ctx,
            "history",
            resource_type=resource_type,
            resource_id=id_,
            query=_query_text(params),
            patients=patients,
        )
        return HistoryResult(
            entries=[s for _, s in rows],
            total=total,
            next_cursor=str(rows[-1][0]) if more and rows else None,
            params=echo,
        )

    def _visible_history(
        self, uow: UnitOfWork, ctx: RequestContext, query: HistoryQuery, count: int
    ) -> tuple[list[tuple[int, StoredResource]], int | None]:
        """A page of the versions ``ctx`` may see: read on until it is full, so hidden
        versions take no place. The total is left out unless nothing was hidden."""
        rows: list[tuple[int, StoredResource]] = []
        hidden = False
        before = query.before_seq
        while len(rows) <= count:
            batch = uow.history(HistoryQuery(query.type, None, query.since, before, count + 1))
            for seq, s in batch:
                if self.permitted(ctx, Interaction.READ, s, uow):
                    rows.append((seq, s))
                else:
                    hidden = True
            if len(batch) <= count:
                break
            before = batch[-1][0]
        complete = len(rows) <= count and query.before_seq is None
        return rows, len(rows) if complete and not hidden else None

    def visible_study_uids(self, ctx: RequestContext, study_uids: Collection[str]) -> set[str]:
        """The DICOM studies the caller may see, decided on their ImagingStudy resources.

        A study whose ImagingStudy is not written yet (it follows its instances within
        seconds) has nothing to decide on and is visible.
        """
        visible = set()
        patients: set[str] = set()
        with self._store.unit_of_work(write=False) as uow:
            for uid in study_uids:
                params = [("identifier", f"urn:dicom:uid|urn:oid:{uid}")]
                matches = self._writer.match(uow, "ImagingStudy", params, limit=1)
                if not matches or self.permitted(ctx, Interaction.SEARCH, matches[0], uow):
                    visible.add(uid)
                    if matches:
                        patients |= patients_in("ImagingStudy", matches[0].id, matches[0].content)
        self.record(
            ctx,
            "search",
            resource_type="ImagingStudy",
            query=f"studies={len(study_uids)}&visible={len(visible)}",
            patients=patients,
        )
        return visible

    # -- the decision API for other platforms ------------------------------------------

    def evaluate_consent(
        self,
        ctx: RequestContext,
        *,
        organization: str,
        purpose: str | None,
        data_class: str,
        patient: str | None = None,
        identifier: tuple[str, str] | None = None,
        labels: Collection[tuple[str, str]] = (),
    ) -> Decision:
        """``Consent/$evaluate``: would ``organization`` see ``data_class`` records of the
        patient (by id, or by an identifier such as the card number) for ``purpose``?
        The answer names the deciding rule and carries no clinical data."""
        if not (
            ctx.scopes.has("consent.evaluate") or ctx.scopes.allows(Interaction.READ, "Consent")
        ):
            raise Forbidden("Consent/$evaluate needs the scope consent.evaluate or Consent read")
        self.check_type(data_class)
        with self._store.unit_of_work(write=False) as uow:
            if patient is None and identifier is not None:
                found = self.all_matching(uow, "Patient", [("identifier", "|".join(identifier))])
                patient = found[0].id if len(found) == 1 else None
            if patient is None:
                decision = Decision(False, "the patient is not known (or not uniquely)")
            elif self._consent is None:
                decision = Decision(True, "permit-all (consent enforcement is off)")
            else:
                facts = ResourceFacts(
                    data_class, frozenset({patient}), frozenset(labels), frozenset()
                )
                caller = self._consent.caller(organization, purpose)
                decision = self._consent.evaluate(caller, facts, ConsentFacts(uow), self._clock())
        query = f"organization={organization}&purpose={purpose}&class={data_class}"
        self.record(
            ctx,
            "consent-decision",
            resource_type="Patient" if patient else None,
            resource_id=patient,
            query=query,
            outcome="permit" if decision.permit else "deny",
        )
        return decision

    # -- access grants (hie.consent.grants) ----------------------------------------

    def record_grant(self, ctx: RequestContext, grant: Grant) -> Grant:
        """Record a time-limited access grant (e.g. card-presented treatment access)."""
        stored = self.grants.add(grant)
        patient_type, _, patient_id = grant.patient.partition("/")
        self.record(
            ctx,
            "grant",
            resource_type=patient_type or None,
            resource_id=patient_id or None,
            query=f"organization={grant.organization}&purpose={grant.purpose}&basis={grant.basis}",
        )
        return stored

    def active_grants(
        self,
        patients: Collection[str],
        organization: str,
        at: datetime | None = None,
        purpose: str | None = None,
    ) -> list[Grant]:
        """Grants in force for any of ``patients`` to ``organization`` at ``at`` (now)."""
        return self.grants.active(patients, organization, at or self._clock(), purpose)

    # -- bundles and validation --------------------------------------------------

    def process_bundle(
        self, ctx: RequestContext, bundle: Any, *, prefer: str = "minimal"
    ) -> dict[str, Any]:
        """A transaction or batch Bundle; the response Bundle as a dict."""
        processor = BundleProcessor(self, self._writer, self._store)
        return processor.process(ctx, bundle, prefer=prefer)

    def transaction(self, ctx: RequestContext, bundle: Mapping[str, Any]) -> dict[str, Any]:
        if bundle.get("type") != "transaction":
            raise BadRequest("expected a Bundle of type 'transaction'")
        return self.process_bundle(ctx, dict(bundle))

    def transactions(
        self, items: Sequence[tuple[RequestContext, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Several transaction Bundles (each with its caller) committed together or not at all.

        For feeds that apply many small Bundles (HL7 v2 mapping): one commit, and one set of
        locks, for the group. Each Bundle is validated, authorised and audited as alone.
        """
        processor = BundleProcessor(self, self._writer, self._store)
        return processor.process_many([(ctx, dict(b)) for ctx, b in items], prefer="minimal")

    def validate(
        self,
        ctx: RequestContext,
        resource_type: str,
        resource: Any,
        *,
        mode: str | None = None,
        id_: str | None = None,
    ) -> list[Issue]:
        """$validate: the issues found (an empty list means valid). Nothing is written."""
        self.check_type(resource_type)
        self.require(ctx, Interaction.READ, resource_type)
        if mode == "delete":
            if id_ is None:
                raise BadRequest("mode 'delete' needs an instance")
            self.read(ctx, resource_type, id_)
            return []
        if resource is None:
            if id_ is None:
                raise BadRequest("$validate needs a resource")
            resource = orjson.loads(self.read(ctx, resource_type, id_).content)
        try:
            self.validated(resource, resource_type, id_ if mode == "update" else None)
        except FhirError as exc:
            return exc.all_issues()
        return []
