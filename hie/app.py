"""The one place the application is assembled: ``build_services`` and ``create_app``."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, Response, request
from sqlalchemy import Engine
from werkzeug.exceptions import HTTPException

from adapters.dicom.dicomweb import create_blueprint as create_dicomweb_blueprint
from adapters.dicom.index import DuplicatePolicy, session_factory
from adapters.dicom.service import DicomConfig, DicomService
from card.assembly import build_card_service
from card.rest import IdentifyPath, http_problem
from card.rest import register as register_card_api
from card.service import CardService
from hie import __version__
from hie.audit.chain import CheckpointSigner
from hie.audit.journal import Journal, JournalDrain, JournalWorker
from hie.audit.sink import AuditSink, GroupCommitAuditSink, JournalAuditSink, NoAudit
from hie.auth.keys import load_or_create_signing_key
from hie.auth.services import AuthServices, build_auth
from hie.auth.tokens import TokenIssuer, TokenVerifier
from hie.consent.decision import permit_all
from hie.consent.point import ConsentPoint
from hie.consent.policy import load_policy
from hie.crypto.fields import FieldCipher
from hie.crypto.keyring import load_keyring
from hie.errors import FhirError
from hie.exchange import Exchange
from hie.fhir.types import SERVED_TYPES
from hie.fhir.validation import load_validator
from hie.identity_wiring import build_identity
from hie.rest import http
from hie.rest.auth import bearer_authenticator, bearer_context
from hie.rest.fhir import create_fhir_blueprint
from hie.rest.oauth import create_oauth_blueprint
from hie.rest.reads import ReadPath
from hie.search import Extractor, default_registry
from hie.settings import Settings, load_settings
from hie.storage.sql.audit import SqlAuditLog
from hie.storage.sql.engine import build_engine
from hie.storage.sql.grants import SqlGrantStore
from hie.storage.sql.store import SqlStore
from hie.web.ui import create_ui_blueprint

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """Everything the ways in need, built once per process."""

    settings: Settings
    engine: Engine
    store: SqlStore
    audit: AuditSink
    audit_log: SqlAuditLog
    exchange: Exchange
    issuer: TokenIssuer
    verifier: TokenVerifier
    dicom: DicomService
    card: CardService
    auth: AuthServices

    def close(self) -> None:
        self.dicom.stop()
        self.audit.close()
        self.audit_log.close()
        self.store.close()


def build_services(
    settings: Settings, *, clock: Clock = utc_now, audit: AuditSink | None = None
) -> Services:
    db = settings.database
    engine = build_engine(
        db.url, synchronous=db.sqlite_synchronous, pool_size=db.pool_size, echo=db.echo
    )
    key = load_or_create_signing_key(settings.data_dir)
    audit_log, shared = build_audit_log(settings, CheckpointSigner(key))
    store = SqlStore(engine, audit=audit_log if shared else None)
    if audit is None and not settings.audit.enabled:
        audit = NoAudit()
    audit_sink = audit or build_audit_sink(settings, audit_log, shared)
    auth = settings.auth
    issuer = TokenIssuer(key, issuer=auth.issuer, audience=auth.audience, clock=clock)
    verifier = TokenVerifier(
        key.public_key(), issuer=auth.issuer, audience=auth.audience, clock=clock
    )
    # Built once per process: compiling every parameter's expression takes ~0.1 s.
    extractor = Extractor(
        default_registry(),
        local_bases=[settings.fhir_base_url],
        resource_types=sorted(SERVED_TYPES),
    )
    grants = SqlGrantStore(engine)
    consent = None
    policy = load_policy(Path(settings.consent.policy) if settings.consent.policy else None)
    if settings.consent.enabled:
        consent = ConsentPoint(policy, extractor.registry.compartment("Patient"), grants)
    exchange = Exchange(
        consent=consent,
        store=store,
        validator=load_validator(),
        extractor=extractor,
        decide=permit_all,
        audit=audit_sink,
        clock=clock,
        new_id=lambda: str(uuid.uuid4()),
        resource_types=SERVED_TYPES,
        base_url=settings.fhir_base_url,
        default_count=settings.fhir.default_count,
        max_count=settings.fhir.max_count,
        grants=grants,
        audit_log=audit_log,
        **build_identity(settings, clock=clock),
    )
    dicom = DicomService(dicom_config(settings), exchange, session_factory(engine))
    card = build_card_service(settings, engine, exchange, clock)
    auth_services = build_auth(
        engine,
        auth,
        issuer=issuer,
        cipher=FieldCipher(load_keyring(settings.data_dir).encryption),
        token_url=settings.token_url,
        clock=lambda: clock().timestamp(),
        purpose_ttl={policy.break_glass_purpose: policy.break_glass_ttl},
    )
    return Services(
        settings,
        engine,
        store,
        audit_sink,
        audit_log,
        exchange,
        issuer,
        verifier,
        dicom,
        card,
        auth_services,
    )


def build_audit_log(
    settings: Settings, signer: CheckpointSigner | None = None
) -> tuple[SqlAuditLog, bool]:
    """The audit trail on its own engine (a pool apart from the requests'), and whether it
    shares the clinical database (then writes chain their records in their own transaction)."""
    db, audit = settings.database, settings.audit
    url = audit.database_url or db.url
    mode = audit.synchronous.upper()
    engine = build_engine(url, synchronous=mode, pool_size=audit.pool_size)
    log = SqlAuditLog(
        engine,
        sign=signer,
        checkpoint_every=audit.checkpoint_every,
        durable=mode in ("FULL", "EXTRA"),
    )
    return log, url == db.url


def journal_dir(settings: Settings) -> Path:
    """This host's audit journals (one per process), drained into the chain."""
    return settings.data_dir / "audit-journal"


def uses_audit_journal(settings: Settings) -> bool:
    """Reads' records go to journals (not group commits fsync'd one by one)."""
    audit = settings.audit
    return audit.enabled and audit.journal and audit.synchronous.upper() not in ("FULL", "EXTRA")


def build_audit_sink(settings: Settings, log: SqlAuditLog, shared: bool) -> AuditSink:
    audit = settings.audit
    if uses_audit_journal(settings):
        directory = journal_dir(settings)
        worker = JournalWorker(
            JournalDrain(log, directory),
            interval=audit.drain_interval,
            in_requests=audit.drain_in_requests,
        )
        return JournalAuditSink(
            Journal(directory),
            worker,
            in_transaction=shared,
            stale_after=audit.stale_after,
        )
    return GroupCommitAuditSink(log, in_transaction=shared, max_batch=audit.max_batch)


def dicom_config(settings: Settings) -> DicomConfig:
    return DicomConfig(
        data_dir=settings.data_dir / "dicom",
        ae_title=settings.dicom.aet,
        host=settings.host,
        port=settings.dicom.port,
        accept_unregistered=settings.dicom.accept_unregistered,
        duplicate_policy=DuplicatePolicy(settings.dicom.duplicate_policy),
        dicomweb_url=settings.dicomweb_url,
        default_timezone=settings.dicom.timezone,
        poll_interval=settings.dicom.poll_interval,
    )


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    settings = settings or (services.settings if services else load_settings())
    services = services or build_services(settings)
    app = Flask("hie")
    app.config["MAX_CONTENT_LENGTH"] = settings.http.max_body_bytes
    app.extensions["hie"] = services
    authenticate = bearer_authenticator(services.verifier)
    app.register_blueprint(
        create_fhir_blueprint(
            services.exchange,
            authenticate,
            max_body=settings.http.max_body_bytes,
            software_version=__version__,
            token_url=settings.token_url,
        ),
        url_prefix="/fhir",
    )
    app.register_blueprint(create_oauth_blueprint(services.auth, services.exchange))
    app.register_blueprint(
        create_ui_blueprint(
            services.auth.logins,
            services.exchange,
            secure_cookies=settings.base_url.startswith("https://"),
        ),
        url_prefix="/ui",
    )

    register_card_api(app, services.card, authenticate)

    # The DICOMweb workers index what STOW-RS stores and keep ImagingStudy current;
    # the DIMSE listener runs in its own process (hie dicom, started by hie serve).
    services.dicom.start(listen=False)
    dicom = services.dicom
    app.register_blueprint(
        create_dicomweb_blueprint(
            engine=dicom.engine,
            files=dicom.files,
            ingest=dicom.ingest,
            records=services.exchange,
            authenticate=lambda _request: authenticate(),
        ),
        url_prefix="/dicomweb",
    )

    # Instance reads and card identification are answered before Flask routing (see
    # hie.rest.reads and card.rest.IdentifyPath).
    app.wsgi_app = IdentifyPath(  # type: ignore[method-assign]
        ReadPath(app.wsgi_app, services.exchange, services.verifier),
        services.card,
        lambda header, address: bearer_context(services.verifier, header, address),
        max_body=settings.http.max_body_bytes,
    )

    @app.get("/healthz")
    def healthz() -> Response:
        with services.store.unit_of_work(write=False):
            pass
        return Response(b'{"status":"ok"}', content_type="application/json")

    @app.errorhandler(FhirError)
    def _fhir_error(error: FhirError) -> Response:
        return http.error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        if request.path.startswith("/card/"):
            return http_problem(error)
        return http.http_error_response(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        return http.internal_error_response(error)

    return app


def wsgi_app() -> Flask:
    """Entry point for the WSGI server: settings come from config/ and the environment."""
    app = create_app(load_settings())
    # The app holds ~400,000 long-lived objects (definitions, validator, extractor); a
    # full collection scans them all, 0.1-1 s, at random requests' expense. They live
    # as long as the process: leave them out of collections.
    gc.collect()
    gc.freeze()
    return app
