"""SQLAlchemy 2 typed models of the FHIR store.

Times are stored as integer microseconds since the Unix epoch (UTC): exact, portable
between SQLite and PostgreSQL, and cheap to compare for ``_since`` and ``_lastUpdated``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid).
Key = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ResourceRow(Base):
    """The current version of each resource (a deletion keeps its row, ``deleted`` set)."""

    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("type", "id", name="uq_resource_type_id"),
        # A type's resources in storage-key order (search pages without _sort) and by time.
        Index("ix_resource_type_pk", "type", "pk"),
        Index("ix_resource_type_last_updated_us", "type", "last_updated_us"),
    )

    pk: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    last_updated_us: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    custodian: Mapped[str | None] = mapped_column(String(128))
    content: Mapped[bytes] = mapped_column(LargeBinary)


class VersionRow(Base):
    """Every version ever written; ``seq`` orders the whole store's history."""

    __tablename__ = "resource_version"
    __table_args__ = (
        UniqueConstraint("res_pk", "version", name="uq_resource_version_res_pk_version"),
        Index("ix_resource_version_type_seq", "type", "seq"),
        Index("ix_resource_version_last_updated_us", "last_updated_us"),
    )

    seq: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(ForeignKey("resource.pk"))
    type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    last_updated_us: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(8))
    custodian: Mapped[str | None] = mapped_column(String(128))
    content: Mapped[bytes] = mapped_column(LargeBinary)
