"""The SQL grant store (``hie.consent.grants.GrantStore``) on the ``consent_grant`` table.

Each call is its own short transaction: a grant is recorded once the check-in that made it
is done, and the decision point reads grants outside the request's unit of work.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import nullcontext
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Engine, Index, String, Table, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from hie.consent.grants import Grant
from hie.storage.sql.engine import WRITE_OPTION, writer_gate
from hie.storage.sql.models import Base, Key


class GrantRow(Base):
    __tablename__ = "consent_grant"
    __table_args__ = (
        Index("ix_consent_grant_patient_org_end", "patient", "organization", "end_us"),
        Index("ix_consent_grant_org_end", "organization", "end_us"),
    )

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    patient: Mapped[str] = mapped_column(String(128))
    organization: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str] = mapped_column(String(32))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    basis: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[str | None] = mapped_column(String(160))
    recorded_by: Mapped[str | None] = mapped_column(String(256))


G = cast(Table, GrantRow.__table__)


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _time(value: int, tz: Any) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz)


class SqlGrantStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._gate = writer_gate(str(engine.url))

    def add(self, grant: Grant) -> Grant:
        gate = self._gate.held() if self._gate else nullcontext()
        with gate, self._engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                row = conn.execute(
                    insert(G)
                    .values(
                        patient=grant.patient,
                        organization=grant.organization,
                        purpose=grant.purpose,
                        start_us=_us(grant.start),
                        end_us=_us(grant.end),
                        basis=grant.basis,
                        evidence=grant.evidence,
                        recorded_by=grant.recorded_by,
                    )
                    .returning(G.c.id)
                ).one()
        return Grant(
            patient=grant.patient,
            organization=grant.organization,
            purpose=grant.purpose,
            start=grant.start,
            end=grant.end,
            basis=grant.basis,
            evidence=grant.evidence,
            recorded_by=grant.recorded_by,
            id=int(row[0]),
        )

    def active(
        self,
        patients: Collection[str],
        organization: str,
        at: datetime,
        purpose: str | None = None,
    ) -> list[Grant]:
        if not patients:
            return []
        now = _us(at)
        query = select(G).where(
            G.c.patient.in_(list(patients)),
            G.c.organization == organization,
            G.c.end_us > now,
            G.c.start_us <= now,
        )
        if purpose is not None:
            query = query.where(G.c.purpose == purpose)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(G.c.end_us.desc(), G.c.id.desc())).all()
        return [
            Grant(
                patient=r.patient,
                organization=r.organization,
                purpose=r.purpose,
                start=_time(r.start_us, at.tzinfo),
                end=_time(r.end_us, at.tzinfo),
                basis=r.basis,
                evidence=r.evidence,
                recorded_by=r.recorded_by,
                id=int(r.id),
            )
            for r in rows
        ]

    def granted_patients(
        self, organization: str, at: datetime, purpose: str | None = None
    ) -> set[str]:
        now = _us(at)
        query = select(G.c.patient).where(
            G.c.organization == organization, G.c.end_us > now, G.c.start_us <= now
        )
        if purpose is not None:
            query = query.where(G.c.purpose == purpose)
        with self._engine.connect() as conn:
            return {str(r[0]) for r in conn.execute(query.distinct())}
