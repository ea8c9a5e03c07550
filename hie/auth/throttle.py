"""Login rate limits, per account and per source address, kept in the database.

Every worker process and every node sees the same counts, and a restart forgets
nothing. An account is refused after ``per_account`` failures within ``window`` seconds
since its last success; an address after ``per_address`` failures within ``window``.
Refused attempts are not counted, so a lock lapses ``window`` seconds after the failures
that caused it. Two attempts racing past the check can each have one more guess; with a
handful of workers that is a handful of guesses, not a brute force.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from sqlalchemy import and_, delete, func, select

from hie.auth.db import AuthDatabase
from hie.auth.models import LoginAttemptRow


class Refusal(StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"


class LoginThrottle:
    def __init__(
        self,
        db: AuthDatabase,
        *,
        per_account: int = 5,
        per_address: int = 20,
        window: int = 900,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.per_account = per_account
        self.per_address = per_address
        self.window = window
        self._clock = clock

    def refusal(self, login: str, address: str) -> Refusal | None:
        """Why an attempt for ``login`` from ``address`` is refused now, or None."""
        since = int(self._clock()) - self.window
        row = LoginAttemptRow
        with self._db.reading() as session:
            last_success = session.scalar(
                select(func.max(row.at)).where(row.login == login, row.success.is_(True))
            )
            start = max(since, last_success or since)
            account_failures = session.scalar(
                select(func.count()).where(
                    row.login == login, row.success.is_(False), row.at > start
                )
            )
            address_failures = session.scalar(
                select(func.count()).where(
                    row.address == address, row.success.is_(False), row.at > since
                )
            )
        if (account_failures or 0) >= self.per_account:
            return Refusal.ACCOUNT
        if (address_failures or 0) >= self.per_address:
            return Refusal.ADDRESS
        return None

    def note(self, login: str, address: str, success: bool) -> None:
        now = int(self._clock())
        row = LoginAttemptRow
        with self._db.writing() as session:
            # Old attempts no longer count; drop this account's and address's (indexed).
            session.execute(
                delete(row).where(
                    and_(
                        row.at < now - self.window, (row.login == login) | (row.address == address)
                    )
                )
            )
            session.add(LoginAttemptRow(login=login, address=address, at=now, success=success))

    def clear(self, login: str) -> None:
        """Forget an account's failures (an administrator unlocking it)."""
        with self._db.writing() as session:
            session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.login == login))
