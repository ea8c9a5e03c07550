"""The calling-AE registry: which organisation a DICOM peer belongs to, and where a
C-MOVE to it goes (``hie dicom ae add AET --org Organization/ID [--host H --port P]``)."""

from __future__ import annotations

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
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

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
        return RegisteredAe(title, organization, host, port)

    def remove(self, ae_title: str) -> bool:
        with self.sessions.begin() as session:
            result = session.execute(
                delete(CallingAE).where(CallingAE.ae_title == ae_title.strip())
            )
            return bool(getattr(result, "rowcount", 0))

    def get(self, ae_title: str) -> RegisteredAe | None:
        with self.sessions() as session:
            row = session.get(CallingAE, ae_title.strip())
            if row is None:
                return None
            return RegisteredAe(row.ae_title, row.organization, row.host, row.port)

    def all(self) -> list[RegisteredAe]:
        with self.sessions() as session:
            rows = session.scalars(select(CallingAE).order_by(CallingAE.ae_title))
            return [RegisteredAe(r.ae_title, r.organization, r.host, r.port) for r in rows]
