"""Web UI sessions, kept in the database so that every worker sees them.

The browser holds a random token; the table keys its SHA-256, so a copy of the database
does not hand out live sessions. A session ends at logout, ``ttl`` seconds after login,
or after ``idle`` seconds without a request, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete

from hie.auth.accounts import Account, AccountRegistry
from hie.auth.db import AuthDatabase
from hie.auth.models import SessionRow

# last_seen is written at most this often: a page view is not a write.
_TOUCH_EVERY = 30


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class WebSession:
    token: str
    account: Account
    csrf: str
    expires_at: int

    @property
    def id(self) -> str:
        """A name for the session in audit records that is not the secret itself."""
        return _digest(self.token)[:16]


class SessionStore:
    def __init__(
        self,
        db: AuthDatabase,
        accounts: AccountRegistry,
        *,
        ttl: int = 8 * 3600,
        idle: int = 30 * 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._accounts = accounts
        self.ttl = ttl
        self.idle = idle
        self._clock = clock

    def open(self, account: Account, address: str | None) -> WebSession:
        now = int(self._clock())
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self._db.writing() as session:
            session.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
            session.add(
                SessionRow(
                    token_hash=_digest(token),
                    login=account.login,
                    csrf=csrf,
                    address=(address or "")[:64] or None,
                    created_at=now,
                    last_seen=now,
                    expires_at=now + self.ttl,
                )
            )
        return WebSession(token, account, csrf, now + self.ttl)

    def find(self, token: str | None) -> WebSession | None:
        """The live session a cookie names, or None (expired sessions are removed)."""
        if not token or len(token) > 128:
            return None
        now = int(self._clock())
        key = _digest(token)
        with self._db.reading() as session:
            row = session.get(SessionRow, key)
            if row is None:
                return None
            login, csrf, last_seen, expires_at = row.login, row.csrf, row.last_seen, row.expires_at
        if expires_at <= now or last_seen + self.idle <= now:
            self.close(token)
            return None
        account = self._accounts.get(login)
        if account is None or not account.active:
            self.close(token)
            return None
        if now - last_seen >= _TOUCH_EVERY:
            with self._db.writing() as session:
                row = session.get(SessionRow, key)
                if row is not None:
                    row.last_seen = now
        return WebSession(token, account, csrf, expires_at)

    def close(self, token: str) -> None:
        with self._db.writing() as session:
            session.execute(delete(SessionRow).where(SessionRow.token_hash == _digest(token)))

    def close_all(self, login: str) -> None:
        with self._db.writing() as session:
            session.execute(delete(SessionRow).where(SessionRow.login == login))
