"""The card service's own tables (on their own MetaData, registered in ``hie.schema``).

Secrets follow ARCHITECTURE.md §3: the resident ID number and the phone number are kept
only as ``hie.crypto`` ciphertext (``*_enc``) plus an HMAC blind index (``*_idx``) for
exact lookup. Times are integer microseconds since the epoch (UTC), as in the FHIR store.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
Key = BigInteger().with_variant(Integer(), "sqlite")
# Statuses in which a card still belongs to its holder: a person has at most one.
LIVE_STATUSES = ("active", "frozen", "lost")
_LIVE = text("status IN ('active', 'frozen', 'lost')")


class CardBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = CardBase.metadata


class CardPerson(CardBase):
    """A card holder: one row per resident ID number."""

    __tablename__ = "card_person"

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    resident_id_enc: Mapped[str] = mapped_column(Text)
    resident_id_idx: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    gender: Mapped[str] = mapped_column(String(16))
    birth_date: Mapped[str] = mapped_column(String(10))
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_idx: Mapped[str | None] = mapped_column(String(64), index=True)
    address: Mapped[str | None] = mapped_column(Text)
    # The card-source Patient written through the exchange (``Patient/<id>``).
    patient: Mapped[str | None] = mapped_column(String(128))
    created_us: Mapped[int] = mapped_column(BigInteger)


class Card(CardBase):
    __tablename__ = "card"
    __table_args__ = (
        Index(
            "ux_card_person_live",
            "person_id",
            unique=True,
            sqlite_where=_LIVE,
            postgresql_where=_LIVE,
        ),
    )

    card_no: Mapped[str] = mapped_column(String(16), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("card_person.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    issued_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)
    replaces: Mapped[str | None] = mapped_column(String(16))
    replaced_by: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)


class CardEvent(CardBase):
    """The card's history: one row per change of its life."""

    __tablename__ = "card_event"

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    card_no: Mapped[str] = mapped_column(String(16), index=True)
    at_us: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(256))
    organization: Mapped[str | None] = mapped_column(String(128))


class QrUse(CardBase):
    """QR tokens already presented: the primary key makes each usable once."""

    __tablename__ = "card_qr_use"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    card_no: Mapped[str] = mapped_column(String(16))
    used_us: Mapped[int] = mapped_column(BigInteger)
    expires_us: Mapped[int] = mapped_column(BigInteger, index=True)
