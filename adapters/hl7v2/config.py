"""The adapter's settings, read from ``hie.settings.Settings`` with defaults for keys the
settings model does not define yet (``[mllp]`` and ``[hl7]`` sections, env ``HIE_MLLP_*``
and ``HIE_HL7_*``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.hl7v2.senders import SenderDefaults
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
    worker_batch: int = 32
    lease_seconds: float = 300.0
    max_attempts: int = 5
    application: str = "HIE"
    facility: str = ""
    conceptmaps: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Hl7Config:
        mllp: Any = settings.mllp
        hl7: Any = settings.hl7
        base = cls()

        def get(section: Any, name: str, default: Any) -> Any:
            return getattr(section, name, default)

        idle = float(get(mllp, "idle_timeout", base.idle_timeout or 0))
        maps = get(hl7, "conceptmaps", "")
        return cls(
            host=settings.host,
            port=int(mllp.port),
            read_timeout=float(get(mllp, "read_timeout", base.read_timeout)),
            idle_timeout=idle or None,
            max_message_bytes=int(get(mllp, "max_message_bytes", base.max_message_bytes)),
            max_connections=int(get(mllp, "max_connections", base.max_connections)),
            tls_cert=str(get(mllp, "tls_cert", "")),
            tls_key=str(get(mllp, "tls_key", "")),
            accept_unregistered=bool(hl7.accept_unregistered),
            defaults=SenderDefaults(
                organization=str(get(hl7, "default_organization", "")),
                charset=str(get(hl7, "default_charset", base.defaults.charset)),
                tz_offset=str(get(hl7, "default_tz", base.defaults.tz_offset)),
            ),
            workers=int(get(hl7, "workers", base.workers)),
            application=str(get(hl7, "application", base.application)),
            facility=str(get(hl7, "facility", base.facility)),
            conceptmaps=tuple(p for p in str(maps).split(",") if p.strip())
            if isinstance(maps, str)
            else tuple(maps),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server TLS context from the configured certificate and key, if any."""
        if not self.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(Path(self.tls_cert), Path(self.tls_key) if self.tls_key else None)
        return context
