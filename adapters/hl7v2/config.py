"""The adapter's settings, read from the ``[mllp]`` and ``[hl7]`` sections of
``hie.settings.Settings`` (env ``HIE_MLLP_*`` and ``HIE_HL7_*``)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from adapters.hl7v2.senders import SenderDefaults
from adapters.hl7v2.worker import WorkerConfig
from hie.settings import Settings


@dataclass(frozen=True)
class Hl7Config:
    host: str = "127.0.0.1"
    port: int = 2575
    read_timeout: float = 30.0
    idle_timeout: float | None = 600.0
    max_message_bytes: int = 16 * 1024 * 1024
    max_connections: int = 256
    tls_cert: str = ""
    tls_key: str = ""
    accept_unregistered: bool = False
    defaults: SenderDefaults = field(default_factory=SenderDefaults)
    workers: int = 2
    worker_processes: int = 1
    worker_batch: int = 32
    commit_batch: int = 8
    lease_seconds: float = 300.0
    max_attempts: int = 5
    application: str = "HIE"
    facility: str = ""
    conceptmaps: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Hl7Config:
        mllp, hl7 = settings.mllp, settings.hl7
        return cls(
            host=settings.host,
            port=mllp.port,
            read_timeout=mllp.read_timeout,
            idle_timeout=mllp.idle_timeout or None,
            max_message_bytes=mllp.max_message_bytes,
            max_connections=mllp.max_connections,
            tls_cert=mllp.tls_cert,
            tls_key=mllp.tls_key,
            accept_unregistered=hl7.accept_unregistered,
            defaults=SenderDefaults(
                organization=hl7.default_organization,
                charset=hl7.default_charset,
                tz_offset=hl7.default_tz,
            ),
            workers=hl7.workers,
            worker_processes=hl7.worker_processes,
            commit_batch=hl7.commit_batch,
            application=hl7.application,
            facility=hl7.facility,
            conceptmaps=tuple(p.strip() for p in hl7.conceptmaps.split(",") if p.strip()),
        )

    def worker_config(self) -> WorkerConfig:
        """What every mapping worker is given, in hie mllp and in hie hl7 work alike."""
        return WorkerConfig(
            batch=self.worker_batch,
            commit_batch=self.commit_batch,
            lease_seconds=self.lease_seconds,
            max_attempts=self.max_attempts,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server TLS context from the configured certificate and key, if any."""
        if not self.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(Path(self.tls_cert), Path(self.tls_key) if self.tls_key else None)
        return context
