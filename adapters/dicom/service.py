"""Assembly: one :class:`DicomService` holds the adapter's parts, runs the DIMSE listener
and the ImagingStudy sync, and is what the DICOMweb blueprint is built from.

``serve(...)`` is the ``hie dicom`` entry point; ``hie serve`` starts the same service
next to HTTP and MLLP.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.dicom.files import InstanceFiles
from adapters.dicom.handlers import context_for
from adapters.dicom.index import DicomIndex, DuplicatePolicy, session_factory
from adapters.dicom.ingest import Ingest
from adapters.dicom.ports import Records
from adapters.dicom.query import QueryEngine
from adapters.dicom.registry import AeRegistry
from adapters.dicom.scp import DicomScp, ScpDependencies
from adapters.dicom.sync import StudySync
from adapters.dicom.to_fhir import RecordOptions
from hie.context import RequestContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomConfig:
    """Settings values: ``dicom.port``, ``dicom.aet``, ``dicom.accept_unregistered``,
    ``data.dir``; the rest have defaults the lead may expose as settings."""

    data_dir: Path
    ae_title: str = "HIE"
    host: str = "127.0.0.1"
    port: int = 11112
    accept_unregistered: bool = False
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    dicomweb_url: str = "http://127.0.0.1:8080/dicomweb"
    default_timezone: str = "+08:00"
    max_associations: int = 32
    poll_interval: float = 0.0002  # seconds; see handlers.handle_requested
    # Several processes listen on the port (SO_REUSEPORT); see hie dicom.
    share_port: bool = False
    sync_quiet: float = 0.3
    sync_max_delay: float = 1.0
    extra: dict[str, str] = field(default_factory=dict)


class DicomService:
    def __init__(
        self, config: DicomConfig, records: Records, sessions: sessionmaker[Session]
    ) -> None:
        self.config = config
        self.records = records
        self.files = InstanceFiles(config.data_dir)
        self.index = DicomIndex(sessions)
        self.registry = AeRegistry(sessions)
        self.sync = StudySync(
            self.index,
            records,
            RecordOptions(config.dicomweb_url, config.default_timezone),
            quiet=config.sync_quiet,
            max_delay=config.sync_max_delay,
        )
        self.ingest = Ingest(
            self.files,
            self.index,
            policy=config.duplicate_policy,
            on_study_changed=self.sync.notify,
            organization_of=self._organization_of,
        )
        self.engine = QueryEngine(sessions, before_read=self.ingest.drain)
        self.scp: DicomScp | None = None
        self._syncing = True

    def _organization_of(self, ae_title: str) -> str | None:
        registered = self.registry.get(ae_title)
        return registered.organization if registered else None

    def context_for(self, ae_title: str) -> RequestContext:
        return context_for(ae_title, self.registry)

    def start(self, *, listen: bool = True, sync: bool = True) -> None:
        """Start the indexer (after indexing what a previous run left pending), the
        ImagingStudy sync unless ``sync=False`` (a worker process leaves it to the first
        ``hie dicom`` process, which finds its studies marked stale in the index) and,
        unless ``listen=False``, the SCP."""
        self.ingest.start()
        if sync:
            self.sync.start()
        self._syncing = sync
        if listen:
            self.scp = DicomScp(
                ScpDependencies(self.ingest, self.registry, self.engine, self.records, self.files),
                ae_title=self.config.ae_title,
                host=self.config.host,
                port=self.config.port,
                accept_unregistered=self.config.accept_unregistered,
                max_associations=self.config.max_associations,
                poll_interval=self.config.poll_interval,
                share_port=self.config.share_port,
            )
            self.scp.start()
            log.info("DICOM %s listening on %s:%d", self.config.ae_title, *self.scp.address)

    @property
    def address(self) -> tuple[str, int]:
        if self.scp is None:
            raise RuntimeError("the SCP is not listening")
        return self.scp.address

    def stop(self) -> None:
        if self.scp is not None:
            self.scp.stop()
            self.scp = None
        self.ingest.stop()
        if self._syncing:
            self.sync.stop(flush=True)


def serve(
    *,
    records: Records,
    engine: Engine,
    data_dir: Path,
    port: int,
    ae_title: str = "HIE",
    host: str = "127.0.0.1",
    accept_unregistered: bool = False,
    duplicate_policy: str = DuplicatePolicy.KEEP_FIRST.value,
    dicomweb_url: str = "http://127.0.0.1:8080/dicomweb",
    block: bool = True,
) -> DicomService:
    """Run the DICOM services (``hie dicom``). With ``block`` runs until interrupted."""
    config = DicomConfig(
        data_dir=Path(data_dir),
        ae_title=ae_title,
        host=host,
        port=port,
        accept_unregistered=accept_unregistered,
        duplicate_policy=DuplicatePolicy(duplicate_policy),
        dicomweb_url=dicomweb_url,
    )
    service = DicomService(config, records, session_factory(engine))
    service.start()
    if block:
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            service.stop()
    return service
