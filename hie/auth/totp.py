"""Time-based one-time passwords (RFC 6238, through pyotp): 6 digits, 30 s steps.

A code is accepted for the current step and one step either side (clock drift), and only
once: the caller keeps the last step accepted and passes it back in.
"""

from __future__ import annotations

import hmac

import pyotp

STEP = 30
ISSUER = "hie"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, login: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans (as a QR code) or imports."""
    return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=ISSUER)


def code_at(secret: str, timestamp: float) -> str:
    return pyotp.TOTP(secret).at(int(timestamp))


def matching_step(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to, if it is valid now and newer than ``last_step``."""
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now) // STEP
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * STEP), code):
            return step
    return None
