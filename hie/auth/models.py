"""Tables of authentication: OAuth2 clients, used assertion ids, clinician accounts,
their web sessions and their login attempts.

They are not clinical data, so they live beside the FHIR store (like the adapters'
registries) rather than behind the exchange. Times are integer seconds since the Unix
epoch (UTC): portable between SQLite and PostgreSQL and cheap to compare.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid).
Key = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


class ClientRow(Base):
    """A registered OAuth2 client (SMART Backend Services) and its public keys."""

    __tablename__ = "auth_client"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text)
    jwks: Mapped[str] = mapped_column(Text)  # JSON {"keys": [...]}, public keys only
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class AssertionRow(Base):
    """A client assertion's ``jti``, kept until the assertion expires: a second use is a replay."""

    __tablename__ = "auth_assertion"
    __table_args__ = (Index(None, "expires_at"),)

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger)


class UserRow(Base):
    """A clinician's account: a Practitioner in a PractitionerRole at an Organization."""

    __tablename__ = "auth_user"

    login: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    practitioner: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(128))
    organization: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text)
    totp_secret: Mapped[str | None] = mapped_column(Text)  # field-encrypted (hie.crypto)
    # The last TOTP time step accepted: a code is good once, not for its whole window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class SessionRow(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "auth_session"
    __table_args__ = (Index(None, "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    login: Mapped[str] = mapped_column(
        ForeignKey("auth_user.login", ondelete="CASCADE"), index=True
    )
    csrf: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_seen: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)


class LoginAttemptRow(Base):
    """One login attempt: the rate limits count recent failures per account and per address."""

    __tablename__ = "auth_login_attempt"
    __table_args__ = (Index(None, "login", "at"), Index(None, "address", "at"))

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[int] = mapped_column(BigInteger)
    success: Mapped[bool] = mapped_column(Boolean)
