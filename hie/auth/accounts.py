"""Clinician accounts: a login, a scrypt password hash, an optional TOTP secret, and the
Practitioner, PractitionerRole and Organization the person acts as."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from hie.auth import totp
from hie.auth.db import AuthDatabase
from hie.auth.models import UserRow
from hie.auth.passwords import PasswordHasher
from hie.auth.scopes import well_formed
from hie.context import RequestContext, Scopes
from hie.crypto.fields import FieldCipher

DEFAULT_SCOPE = "user/*.rs"
MIN_PASSWORD = 10
# Clinicians act for treatment unless a later flow (break-glass) says otherwise.
CLINICIAN_PURPOSE = "TREAT"

_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@\-]{0,63}$")
_REFERENCE = re.compile(r"^(Practitioner|PractitionerRole|Organization)/[A-Za-z0-9\-.]{1,64}$")
_TOTP_CONTEXT = b"auth_user.totp_secret"


class AccountError(ValueError):
    """An account cannot be made or changed as asked; the message says why."""


@dataclass(frozen=True)
class Account:
    login: str
    practitioner: str
    role: str
    organization: str
    scope: str
    totp: bool
    active: bool = True

    def context(self, source: str | None = None, session_id: str | None = None) -> RequestContext:
        """Who a signed-in clinician is, for every exchange call the web UI makes."""
        return RequestContext(
            actor=f"user:{self.login}",
            organization=self.organization,
            purpose=CLINICIAN_PURPOSE,
            scopes=Scopes(self.scope),
            source=source,
            token_id=session_id,
            practitioner=self.practitioner,
            role=self.role,
        )


def _reference(value: str, kind: str) -> str:
    if not _REFERENCE.match(value) or not value.startswith(kind + "/"):
        raise AccountError(f"{value!r} is not a reference {kind}/ID")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")


class AccountRegistry:
    def __init__(
        self,
        db: AuthDatabase,
        cipher: FieldCipher,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._hasher = hasher or PasswordHasher()
        self._clock = clock

    def add(
        self,
        login: str,
        password: str,
        *,
        practitioner: str,
        role: str,
        organization: str,
        scope: str = DEFAULT_SCOPE,
        with_totp: bool = False,
    ) -> tuple[Account, str | None]:
        """The new account, and its TOTP secret if it has one (shown once, never again)."""
        if not _LOGIN.match(login):
            raise AccountError(f"login {login!r}: letters, digits, '.', '_', '@', '-', up to 64")
        check_password(password)
        scope = " ".join(scope.split())
        if not scope:
            raise AccountError("an account needs at least one scope")
        if bad := well_formed(scope):
            raise AccountError(f"not SMART v2 scopes: {', '.join(bad)}")
        if any(item.startswith(("system/", "patient/")) for item in scope.split()):
            raise AccountError("a clinician's scopes are user/ scopes")
        secret = totp.new_secret() if with_totp else None
        row = UserRow(
            login=login,
            password_hash=self._hasher.hash(password),
            practitioner=_reference(practitioner, "Practitioner"),
            role=_reference(role, "PractitionerRole"),
            organization=_reference(organization, "Organization"),
            scope=scope,
            totp_secret=self._seal(secret) if secret else None,
            totp_last_step=None,
            active=True,
            created_at=int(self._clock()),
        )
        try:
            with self._db.writing() as session:
                session.add(row)
        except IntegrityError:
            raise AccountError(f"an account {login!r} exists already") from None
        return _account(row), secret

    def get(self, login: str) -> Account | None:
        with self._db.reading() as session:
            row = session.get(UserRow, login)
            return None if row is None else _account(row)

    def all(self) -> list[Account]:
        with self._db.reading() as session:
            rows = session.scalars(select(UserRow).order_by(UserRow.login)).all()
            return [_account(row) for row in rows]

    def remove(self, login: str) -> bool:
        with self._db.writing() as session:
            result = session.execute(delete(UserRow).where(UserRow.login == login))
            return bool(getattr(result, "rowcount", 0))

    def set_password(self, login: str, password: str) -> bool:
        check_password(password)
        hashed = self._hasher.hash(password)
        with self._db.writing() as session:
            result = session.execute(
                update(UserRow).where(UserRow.login == login).values(password_hash=hashed)
            )
            return bool(getattr(result, "rowcount", 0))

    def set_active(self, login: str, active: bool) -> bool:
        with self._db.writing() as session:
            result = session.execute(
                update(UserRow).where(UserRow.login == login).values(active=active)
            )
            return bool(getattr(result, "rowcount", 0))

    def reset_totp(self, login: str) -> str | None:
        """A new TOTP secret for the account (None if there is no such account)."""
        secret = totp.new_secret()
        with self._db.writing() as session:
            result = session.execute(
                update(UserRow)
                .where(UserRow.login == login)
                .values(totp_secret=self._seal(secret), totp_last_step=None)
            )
            return secret if getattr(result, "rowcount", 0) else None

    def check(self, login: str, password: str, code: str | None) -> Account | None:
        """The account if the password (and the TOTP code, where one is set) are right.

        Unknown logins cost as much as known ones, so timing does not reveal accounts.
        """
        with self._db.reading() as session:
            row = session.get(UserRow, login)
            stored = row.password_hash if row is not None else self._hasher.decoy
        password_ok = self._hasher.verify(password, stored)
        if row is None or not row.active or not password_ok:
            return None
        if row.totp_secret is not None and not self._accept_code(row, code or ""):
            return None
        if self._hasher.needs_rehash(row.password_hash):
            self.set_password(login, password)
        return _account(row)

    def _accept_code(self, row: UserRow, code: str) -> bool:
        assert row.totp_secret is not None
        secret = self._cipher.decrypt(row.totp_secret, _TOTP_CONTEXT)
        step = totp.matching_step(secret, code, self._clock(), row.totp_last_step)
        if step is None:
            return False
        # Compare-and-set: of two logins racing with one code, exactly one wins.
        with self._db.writing() as session:
            last = UserRow.totp_last_step
            result = session.execute(
                update(UserRow)
                .where(UserRow.login == row.login)
                .where((last.is_(None)) | (last < step))
                .values(totp_last_step=step)
            )
            return bool(getattr(result, "rowcount", 0))

    def _seal(self, secret: str) -> str:
        return self._cipher.encrypt(secret, _TOTP_CONTEXT)


def _account(row: UserRow) -> Account:
    return Account(
        login=row.login,
        practitioner=row.practitioner,
        role=row.role,
        organization=row.organization,
        scope=row.scope,
        totp=row.totp_secret is not None,
        active=row.active,
    )
