"""The sender registry: who may send, and how to read what they send.

A sender is the pair (MSH-3 sending application, MSH-4 sending facility), each read as its
HD namespace id (or universal id when the namespace is empty). A sender records its owning
Organization, its default character set (for an empty MSH-18), its default UTC offset (for
times sent without one), the identifier system of its local MRNs, the assigning authority
it uses for resident ID numbers (besides identifier type NNCHN), whether hl7apy validates
its messages strictly, and where application ACKs go in enhanced mode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import quote

from sqlalchemy import Boolean, DateTime, Engine, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from adapters.hl7v2 import charsets, timestamps
from adapters.hl7v2.db import Base
from hie.fhir.identifiers import mrn_system

MRN_SYSTEM_BASE = "urn:hie:hl7v2"


def default_mrn_system(application: str, facility: str, organization: str = "") -> str:
    """The MRN system of the sender's organisation (shared with its PACS), else its facility's."""
    if organization:
        return mrn_system(organization)
    return f"{MRN_SYSTEM_BASE}:{quote(facility or application, safe='')}:mrn"


class SenderRow(Base):
    __tablename__ = "hl7_sender"
    __table_args__ = (UniqueConstraint("application", "facility"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application: Mapped[str] = mapped_column(String(227))
    facility: Mapped[str] = mapped_column(String(227))
    organization: Mapped[str] = mapped_column(String(128))
    charset: Mapped[str] = mapped_column(String(32))
    tz_offset: Mapped[str] = mapped_column(String(6))
    mrn_system: Mapped[str] = mapped_column(String(255))
    resident_id_authority: Mapped[str | None] = mapped_column(String(227))
    strict: Mapped[bool] = mapped_column(Boolean, default=False)
    ack_address: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Sender:
    """A registered sender (immutable; what intake, workers and mappers read)."""

    id: int
    application: str
    facility: str
    organization: str
    charset: str = "GB18030"
    tz_offset: str = "+08:00"
    mrn_system: str = ""
    resident_id_authority: str | None = None
    strict: bool = False
    ack_address: str | None = None
    active: bool = True
    auto_registered: bool = False

    @property
    def label(self) -> str:
        return f"{self.application}|{self.facility}"

    @classmethod
    def from_row(cls, row: SenderRow) -> Sender:
        return cls(
            id=row.id,
            application=row.application,
            facility=row.facility,
            organization=row.organization,
            charset=row.charset,
            tz_offset=row.tz_offset,
            mrn_system=row.mrn_system,
            resident_id_authority=row.resident_id_authority,
            strict=row.strict,
            ack_address=row.ack_address,
            active=row.active,
            auto_registered=row.auto_registered,
        )


@dataclass(frozen=True)
class SenderDefaults:
    """What an unregistered sender gets on first contact (``hl7.accept_unregistered``)."""

    organization: str = ""
    charset: str = "GB18030"
    tz_offset: str = "+08:00"


class SenderError(ValueError):
    """A sender setting is invalid (unknown charset, bad offset, ...)."""


def _validate(charset: str, tz_offset: str, organization: str) -> tuple[str, str]:
    try:
        charsets.codec_for(charset)
    except charsets.UnknownCharset:
        raise SenderError(f"unknown character set {charset!r}") from None
    try:
        offset = timestamps.normalise_offset(tz_offset)
    except timestamps.InvalidTimestamp as exc:
        raise SenderError(str(exc)) from None
    if organization and not organization.startswith("Organization/"):
        raise SenderError(f"organization must be a reference Organization/ID, not {organization!r}")
    return charset, offset


class SenderRegistry:
    """Registered senders, cached in memory; misses are looked up again after ``miss_ttl``."""

    def __init__(
        self,
        engine: Engine,
        *,
        ttl: float = 30.0,
        miss_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Sender | None]] = {}
        self._by_id: dict[int, Sender] = {}

    def lookup(self, application: str, facility: str) -> Sender | None:
        key = (application, facility)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None:
            at, sender = hit
            if now - at < (self.ttl if sender is not None else self.miss_ttl):
                return sender
        with Session(self.engine) as session:
            row = session.scalars(
                select(SenderRow).where(
                    SenderRow.application == application, SenderRow.facility == facility
                )
            ).first()
            sender = Sender.from_row(row) if row is not None else None
        self._remember(key, sender, now)
        return sender

    def by_id(self, sender_id: int) -> Sender | None:
        if sender_id in self._by_id:
            return self._by_id[sender_id]
        with Session(self.engine) as session:
            row = session.get(SenderRow, sender_id)
            if row is None:
                return None
            sender = Sender.from_row(row)
        self._remember((sender.application, sender.facility), sender, self._clock())
        return sender

    def _remember(self, key: tuple[str, str], sender: Sender | None, now: float) -> None:
        with self._lock:
            self._cache[key] = (now, sender)
            if sender is not None:
                self._by_id[sender.id] = sender

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
            self._by_id.clear()

    def add(
        self,
        application: str,
        facility: str,
        organization: str,
        *,
        charset: str = "GB18030",
        tz_offset: str = "+08:00",
        mrn_system: str | None = None,
        resident_id_authority: str | None = None,
        strict: bool = False,
        ack_address: str | None = None,
        auto_registered: bool = False,
    ) -> Sender:
        """Register a sender; raises SenderError when it exists or a setting is invalid."""
        charset, offset = _validate(charset, tz_offset, organization)
        row = SenderRow(
            application=application,
            facility=facility,
            organization=organization,
            charset=charset,
            tz_offset=offset,
            mrn_system=mrn_system or default_mrn_system(application, facility, organization),
            resident_id_authority=resident_id_authority or None,
            strict=strict,
            ack_address=ack_address or None,
            active=True,
            auto_registered=auto_registered,
            created_at=datetime.now(UTC),
        )
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
                session.flush()
                sender = Sender.from_row(row)
        except IntegrityError:
            raise SenderError(f"sender {application}|{facility} is already registered") from None
        self._remember((application, facility), sender, self._clock())
        return sender

    def register_on_first_contact(
        self, application: str, facility: str, defaults: SenderDefaults
    ) -> Sender:
        """Register an unknown sender with the defaults (or return it if a peer just did)."""
        try:
            return self.add(
                application,
                facility,
                defaults.organization,
                charset=defaults.charset,
                tz_offset=defaults.tz_offset,
                auto_registered=True,
            )
        except SenderError:
            self._cache.pop((application, facility), None)
            found = self.lookup(application, facility)
            if found is None:
                raise
            return found

    def update(self, application: str, facility: str, **changes: object) -> Sender:
        current = self.lookup(application, facility)
        if current is None:
            raise SenderError(f"sender {application}|{facility} is not registered")
        updated = replace(current, **changes)  # type: ignore[arg-type]
        _validate(updated.charset, updated.tz_offset, updated.organization)
        with Session(self.engine) as session, session.begin():
            row = session.get_one(SenderRow, current.id)
            for name, value in changes.items():
                if name == "tz_offset":
                    value = timestamps.normalise_offset(str(value))
                setattr(row, name, value)
            session.flush()
            sender = Sender.from_row(row)
        self._remember((application, facility), sender, self._clock())
        return sender

    def all(self) -> list[Sender]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(SenderRow).order_by(SenderRow.application, SenderRow.facility)
            ).all()
            return [Sender.from_row(r) for r in rows]
