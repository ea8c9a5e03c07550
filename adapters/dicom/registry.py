"""The calling-AE registry: which organisation a DICOM peer belongs to, and where a
C-MOVE to it goes (``hie dicom ae add AET --org Organization/ID [--host H --port P]``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from adapters.dicom.identifiers import organization_id, valid_ae_title
from adapters.dicom.models import CallingAE


@dataclass(frozen=True, slots=True)
class RegisteredAe:
    ae_title: str
    organization: str
    host: str | None = None
    port: int | None = None

    @property
    def is_move_destination(self) -> bool:
        return bool(self.host) and self.port is not None


class AeRegistry:
    """Registrations, read through a short cache: every C-STORE asks who its sender is,
    and a registration made by another process (the CLI) is seen within ``ttl`` seconds."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, RegisteredAe | None]] = {}

    def add(
        self, ae_title: str, organization: str, host: str | None = None, port: int | None = None
    ) -> RegisteredAe:
        """Register (or re-register) a calling AE. Raises ValueError on a bad value."""
        title = ae_title.strip()
        if not valid_ae_title(title):
            raise ValueError(f"not a valid AE title: {ae_title!r}")
        organization_id(organization)
        if (host is None) != (port is None):
            raise ValueError("a move destination needs both host and port")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port}")
        with self.sessions.begin() as session:
            row = session.get(CallingAE, title)
            if row is None:
                row = CallingAE(ae_title=title)
                session.add(row)
            row.organization, row.host, row.port = organization, host, port
        self._cache.pop(title, None)
        return RegisteredAe(title, organization, host, port)

    def remove(self, ae_title: str) -> bool:
        self._cache.pop(ae_title.strip(), None)
        with self.sessions.begin() as session:
            result = session.execute(
                delete(CallingAE).where(CallingAE.ae_title == ae_title.strip())
            )
            return bool(getattr(result, "rowcount", 0))

    def get(self, ae_title: str) -> RegisteredAe | None:
        title = ae_title.strip()
        now = self.clock()
        cached = self._cache.get(title)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        with self.sessions() as session:
            row = session.get(CallingAE, title)
            found = (
                None
                if row is None
                else RegisteredAe(row.ae_title, row.organization, row.host, row.port)
            )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[title] = (now, found)
        return found

    def all(self) -> list[RegisteredAe]:
        with self.sessions() as session:
            rows = session.scalars(select(CallingAE).order_by(CallingAE.ae_title))
            return [RegisteredAe(r.ae_title, r.organization, r.host, r.port) for r in rows]
