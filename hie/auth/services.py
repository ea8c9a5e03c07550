"""Everything authentication needs, assembled once per process by ``hie.app``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from hie.auth.accounts import AccountRegistry
from hie.auth.assertions import AssertionVerifier
from hie.auth.clients import ClientRegistry
from hie.auth.db import AuthDatabase
from hie.auth.grants import ClientCredentials
from hie.auth.login import Logins
from hie.auth.passwords import PasswordHasher
from hie.auth.sessions import SessionStore
from hie.auth.throttle import LoginThrottle
from hie.auth.tokens import TokenIssuer
from hie.crypto.fields import FieldCipher
from hie.settings import AuthSettings


@dataclass(frozen=True)
class AuthServices:
    clients: ClientRegistry
    assertions: AssertionVerifier
    grants: ClientCredentials
    accounts: AccountRegistry
    logins: Logins
    token_url: str


def build_auth(
    engine: Engine,
    settings: AuthSettings,
    *,
    issuer: TokenIssuer,
    cipher: FieldCipher,
    token_url: str,
    clock: Callable[[], float] = time.time,
    purpose_ttl: Mapping[str, int] | None = None,
) -> AuthServices:
    db = AuthDatabase(engine)
    clients = ClientRegistry(db, clock)
    assertions = AssertionVerifier(
        clients,
        db,
        audience=token_url,
        clock=clock,
        max_lifetime=settings.assertion_max_lifetime,
    )
    accounts = AccountRegistry(
        db, cipher, hasher=PasswordHasher(log2_n=settings.password_log2_n), clock=clock
    )
    throttle = LoginThrottle(
        db,
        per_account=settings.login_account_failures,
        per_address=settings.login_address_failures,
        window=settings.login_window,
        clock=clock,
    )
    sessions = SessionStore(
        db, accounts, ttl=settings.session_ttl, idle=settings.session_idle, clock=clock
    )
    return AuthServices(
        clients=clients,
        assertions=assertions,
        grants=ClientCredentials(
            assertions, issuer, ttl=settings.client_token_ttl, purpose_ttl=purpose_ttl
        ),
        accounts=accounts,
        logins=Logins(accounts, throttle, sessions),
        token_url=token_url,
    )
