"""Tables the DICOM adapter owns: the attribute index and the calling-AE registry.

The index holds one row per patient (per issuing organisation), study, series and
instance, with the attributes C-FIND, C-MOVE, C-GET and QIDO/WADO-RS match on. The
shared FHIR record (Patient, ImagingStudy) is *not* here: it lives behind
:class:`adapters.dicom.ports.Records`.

Dates (DA) are kept as ``YYYYMMDD`` and times (TM) as ``HHMMSS[.ffffff]`` strings, so
range matching is string comparison. ``record_stale`` marks studies whose ImagingStudy
must be rewritten; it is the durable half of the debounced sync (see ``sync.py``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    metadata = metadata


class CallingAE(Base):
    """A registered DICOM peer: who it belongs to, and where C-MOVE sends to it."""

    __tablename__ = "dicom_calling_ae"

    ae_title: Mapped[str] = mapped_column(String(16), primary_key=True)
    organization: Mapped[str] = mapped_column(String(128))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)


class DicomPatient(Base):
    __tablename__ = "dicom_patient"
    __table_args__ = (UniqueConstraint("issuer", "patient_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "Organization/ID" of the sender, or "ae:<AET>" for an unregistered calling AE.
    issuer: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(400), default="")
    name_alphabetic: Mapped[str] = mapped_column(String(200), default="", index=True)
    name_ideographic: Mapped[str] = mapped_column(String(200), default="", index=True)
    name_phonetic: Mapped[str] = mapped_column(String(200), default="")
    birth_date: Mapped[str | None] = mapped_column(String(8))
    sex: Mapped[str | None] = mapped_column(String(16))


class DicomStudy(Base):
    __tablename__ = "dicom_study"
    __table_args__ = (Index(None, "record_stale", "changed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("dicom_patient.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_date: Mapped[str | None] = mapped_column(String(8), index=True)
    study_time: Mapped[str | None] = mapped_column(String(16))
    accession_number: Mapped[str] = mapped_column(String(16), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    referring_physician: Mapped[str] = mapped_column(String(400), default="")
    timezone_offset: Mapped[str | None] = mapped_column(String(5))
    # Who sent it last: the organisation and AE the ImagingStudy is written on behalf of.
    organization: Mapped[str | None] = mapped_column(String(128))
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    record_stale: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[float] = mapped_column(Float, default=0.0)
    stale_since: Mapped[float] = mapped_column(Float, default=0.0)


class DicomSeries(Base):
    __tablename__ = "dicom_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("dicom_study.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(64), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    series_date: Mapped[str | None] = mapped_column(String(8))
    series_time: Mapped[str | None] = mapped_column(String(16))


class DicomInstance(Base):
    __tablename__ = "dicom_instance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("dicom_series.id"), index=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("dicom_study.id"), index=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    # Relative to the data dir; the file holds the bytes exactly as received.
    path: Mapped[str] = mapped_column(String(400))
    size: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[float] = mapped_column(Float)
