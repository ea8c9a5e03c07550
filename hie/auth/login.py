"""Signing a clinician in: rate limits first, then password and TOTP, then a session."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hie.auth.accounts import AccountRegistry
from hie.auth.sessions import SessionStore, WebSession
from hie.auth.throttle import LoginThrottle


def clean_login(text: str) -> str:
    """A login as typed, made safe to store and audit: trimmed, printable, at most 64."""
    return "".join(c if c.isprintable() else "?" for c in text.strip()[:64])


class LoginOutcome(StrEnum):
    SUCCESS = "success"
    REFUSED = "refused"  # wrong login, password or code (the page does not say which)
    THROTTLED = "throttled"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    detail: str
    session: WebSession | None = None


class Logins:
    def __init__(
        self, accounts: AccountRegistry, throttle: LoginThrottle, sessions: SessionStore
    ) -> None:
        self.accounts = accounts
        self.throttle = throttle
        self.sessions = sessions

    def login(self, login: str, password: str, code: str | None, address: str) -> LoginResult:
        login = clean_login(login)
        refusal = self.throttle.refusal(login, address)
        if refusal is not None:
            return LoginResult(
                LoginOutcome.THROTTLED, f"too many failed attempts for this {refusal.value}"
            )
        account = self.accounts.check(login, password, code)
        self.throttle.note(login, address, account is not None)
        if account is None:
            return LoginResult(LoginOutcome.REFUSED, "wrong login, password or one-time code")
        return LoginResult(LoginOutcome.SUCCESS, "signed in", self.sessions.open(account, address))
