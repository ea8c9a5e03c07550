"""Clinician accounts: password hashes, TOTP, rate limits and sessions, with a settable clock."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from hie.app import Services
from hie.auth import totp
from hie.auth.accounts import AccountError, AccountRegistry
from hie.auth.db import AuthDatabase
from hie.auth.login import LoginOutcome, Logins
from hie.auth.passwords import PasswordHasher
from hie.auth.sessions import SessionStore
from hie.auth.throttle import LoginThrottle, Refusal
from hie.crypto.fields import FieldCipher
from hie.crypto.keyring import load_keyring

PASSWORD = "correct horse battery"


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def logins(services: Services, clock: Clock) -> Logins:
    db = AuthDatabase(services.engine)
    cipher = FieldCipher(load_keyring(services.settings.data_dir).encryption)
    accounts = AccountRegistry(db, cipher, hasher=PasswordHasher(log2_n=12), clock=clock)
    throttle = LoginThrottle(db, per_account=3, per_address=5, window=600, clock=clock)
    sessions = SessionStore(db, accounts, ttl=3600, idle=600, clock=clock)
    return Logins(accounts, throttle, sessions)


def add(logins: Logins, login: str = "dr.li", *, with_totp: bool = False) -> str | None:
    _, secret = logins.accounts.add(
        login,
        PASSWORD,
        practitioner="Practitioner/li",
        role="PractitionerRole/li-cardio",
        organization="Organization/hosp-a",
        with_totp=with_totp,
    )
    return secret


def test_password_hashes_are_salted_scrypt_and_verify() -> None:
    hasher = PasswordHasher(log2_n=12)
    first, second = hasher.hash(PASSWORD), hasher.hash(PASSWORD)
    assert first != second
    assert first.startswith("scrypt$12$8$1$")
    assert hasher.verify(PASSWORD, first)
    assert not hasher.verify(PASSWORD + "!", first)
    assert not hasher.verify(PASSWORD, "scrypt$12$8$1$bad")
    assert not hasher.verify(PASSWORD, "md5$whatever")
    assert PasswordHasher(log2_n=13).needs_rehash(first)


def test_the_database_holds_no_password_or_totp_secret(logins: Logins, services: Services) -> None:
    secret = add(logins, with_totp=True)
    assert secret is not None
    with services.engine.connect() as conn:
        row = conn.execute(text("SELECT password_hash, totp_secret FROM auth_user")).one()
    assert PASSWORD not in row[0]
    assert row[0].startswith("scrypt$")
    assert secret not in row[1]
    assert row[1].startswith("hie1.")


def test_account_values_are_checked(logins: Logins) -> None:
    add(logins)
    with pytest.raises(AccountError, match="exists"):
        add(logins)
    bad = {
        "login": ("no spaces", PASSWORD, "Practitioner/p", "PractitionerRole/r", "Organization/o"),
        "short": ("a", "short", "Practitioner/p", "PractitionerRole/r", "Organization/o"),
        "kind": ("b", PASSWORD, "Patient/p", "PractitionerRole/r", "Organization/o"),
    }
    for login, password, practitioner, role, org in bad.values():
        with pytest.raises(AccountError):
            logins.accounts.add(
                login, password, practitioner=practitioner, role=role, organization=org
            )
    with pytest.raises(AccountError, match="user/"):
        logins.accounts.add(
            "c",
            PASSWORD,
            practitioner="Practitioner/p",
            role="PractitionerRole/r",
            organization="Organization/o",
            scope="system/*.cruds",
        )


def test_login_opens_a_session_that_carries_the_clinician(logins: Logins) -> None:
    add(logins)
    result = logins.login("dr.li", PASSWORD, None, "10.0.0.1")
    assert result.outcome is LoginOutcome.SUCCESS
    assert result.session is not None
    found = logins.sessions.find(result.session.token)
    assert found is not None
    ctx = found.account.context(source="10.0.0.1")
    assert ctx.actor == "user:dr.li"
    assert ctx.organization == "Organization/hosp-a"
    assert ctx.practitioner == "Practitioner/li"
    assert ctx.role == "PractitionerRole/li-cardio"
    assert ctx.scopes.raw == "user/*.rs"
    assert logins.sessions.find("forged-token") is None
    assert logins.login("dr.li", "wrong password!", None, "10.0.0.1").session is None
    assert logins.login("nobody", PASSWORD, None, "10.0.0.1").session is None


def test_sessions_expire_when_idle_and_after_their_lifetime(logins: Logins, clock: Clock) -> None:
    add(logins)
    session = logins.login("dr.li", PASSWORD, None, "a").session
    assert session is not None
    for _ in range(6):  # active use keeps it alive past the idle limit...
        clock.now += 500
        assert logins.sessions.find(session.token) is not None
    clock.now += 601  # ...but not past idleness
    assert logins.sessions.find(session.token) is None
    session = logins.login("dr.li", PASSWORD, None, "a").session
    assert session is not None
    for _ in range(7):
        clock.now += 500
        assert logins.sessions.find(session.token) is not None
    clock.now += 200  # 3700 s after login: past the 3600 s lifetime, however active
    assert logins.sessions.find(session.token) is None


def test_logout_and_disabling_end_sessions(logins: Logins) -> None:
    add(logins)
    first = logins.login("dr.li", PASSWORD, None, "a").session
    second = logins.login("dr.li", PASSWORD, None, "a").session
    assert first is not None
    assert second is not None
    assert first.token != second.token
    logins.sessions.close(first.token)
    assert logins.sessions.find(first.token) is None
    assert logins.sessions.find(second.token) is not None
    logins.accounts.set_active("dr.li", False)
    assert logins.sessions.find(second.token) is None
    assert logins.login("dr.li", PASSWORD, None, "a").session is None


def test_totp_is_required_and_each_code_is_good_once(logins: Logins, clock: Clock) -> None:
    secret = add(logins, with_totp=True)
    assert secret is not None
    assert logins.login("dr.li", PASSWORD, None, "a").session is None
    assert logins.login("dr.li", PASSWORD, "000000", "b").session is None
    code = totp.code_at(secret, clock.now)
    assert logins.login("dr.li", PASSWORD, code, "c").session is not None
    assert logins.login("dr.li", PASSWORD, code, "d").session is None  # replayed code
    clock.now += totp.STEP
    late = totp.code_at(secret, clock.now - totp.STEP)  # previous step, already used
    assert logins.login("dr.li", PASSWORD, late, "e").session is None
    assert logins.login("dr.li", PASSWORD, totp.code_at(secret, clock.now), "f").session
    # A right code with a wrong password is still refused.
    clock.now += totp.STEP
    wrong = logins.login("dr.li", "wrong password!", totp.code_at(secret, clock.now), "g")
    assert wrong.session is None
    assert logins.login("dr.li", PASSWORD, "١٢٣٤٥٦", "h").session is None  # non-ASCII digits


def test_failures_lock_the_account_for_a_while(logins: Logins, clock: Clock) -> None:
    add(logins)
    for n in range(3):
        assert logins.login("dr.li", f"wrong {n} password", None, f"10.0.0.{n}").outcome is (
            LoginOutcome.REFUSED
        )
    # The right password from a fresh address is now refused too: the account is locked.
    locked = logins.login("dr.li", PASSWORD, None, "10.9.9.9")
    assert locked.outcome is LoginOutcome.THROTTLED
    assert "account" in locked.detail
    clock.now += 601
    assert logins.login("dr.li", PASSWORD, None, "10.9.9.9").outcome is LoginOutcome.SUCCESS


def test_a_success_resets_the_account_count(logins: Logins, clock: Clock) -> None:
    add(logins)
    for _ in range(2):
        logins.login("dr.li", "wrong password!", None, "x")
        clock.now += 1
    assert logins.login("dr.li", PASSWORD, None, "x").outcome is LoginOutcome.SUCCESS
    clock.now += 1
    for _ in range(2):
        assert logins.login("dr.li", "wrong password!", None, "x").outcome is (LoginOutcome.REFUSED)
        clock.now += 1
    assert logins.login("dr.li", PASSWORD, None, "x").outcome is LoginOutcome.SUCCESS


def test_an_address_guessing_many_accounts_is_throttled(logins: Logins, clock: Clock) -> None:
    add(logins)
    for n in range(5):
        logins.login(f"user{n}", "guess guess guess", None, "203.0.113.7")
    assert logins.throttle.refusal("dr.li", "203.0.113.7") is Refusal.ADDRESS
    assert logins.login("dr.li", PASSWORD, None, "203.0.113.7").outcome is LoginOutcome.THROTTLED
    assert logins.login("dr.li", PASSWORD, None, "198.51.100.1").outcome is LoginOutcome.SUCCESS
    clock.now += 601
    assert logins.throttle.refusal("dr.li", "203.0.113.7") is None


def test_limits_are_shared_by_every_worker(
    logins: Logins, services: Services, clock: Clock
) -> None:
    """A second set of components on the same database (another process) sees the count."""
    add(logins)
    db = AuthDatabase(services.engine)
    other = LoginThrottle(db, per_account=3, per_address=5, window=600, clock=clock)
    for _ in range(3):
        logins.login("dr.li", "wrong password!", None, "a")
    assert other.refusal("dr.li", "b") is Refusal.ACCOUNT
    other.clear("dr.li")
    assert logins.throttle.refusal("dr.li", "a") is None
