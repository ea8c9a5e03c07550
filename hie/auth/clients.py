"""Registered OAuth2 clients: hospital systems, card readers and the city's platforms.

Each client belongs to an Organization, is registered for a set of scopes, and proves
who it is with a private key whose public half (a JWK Set) is registered here. Only
RS384 and ES384 keys are accepted, as SMART Backend Services requires.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from hie.auth.db import AuthDatabase
from hie.auth.models import ClientRow
from hie.auth.scopes import well_formed

ALGORITHMS = ("RS384", "ES384")
MIN_RSA_BITS = 2048

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_ORGANIZATION = re.compile(r"^Organization/[A-Za-z0-9\-.]{1,64}$")
# RFC 7638: the members that make up a key's thumbprint, per key type.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


class RegistrationError(ValueError):
    """A registration cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class RegisteredClient:
    name: str
    organization: str
    scope: str
    keys: tuple[dict[str, Any], ...]
    active: bool = True

    def verification_key(self, kid: str | None, alg: str) -> Any:
        """The registered public key that an assertion with this header names, or None."""
        candidates = [k for k in self.keys if kid is None or k.get("kid") == kid]
        if kid is None and len(self.keys) > 1:
            return None  # several keys: the assertion must say which
        for jwk in candidates:
            if key_algorithm(jwk) == alg:
                return jwt.PyJWK(jwk, algorithm=alg).key
        return None


def key_algorithm(jwk: Mapping[str, Any]) -> str | None:
    """The one algorithm a registered key may be used with."""
    if jwk.get("kty") == "RSA":
        return "RS384"
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-384":
        return "ES384"
    return None


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, used as its ``kid``."""
    members = _THUMBPRINT_MEMBERS[str(jwk["kty"])]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def parse_jwks(text: str) -> list[dict[str, Any]]:
    """The public keys of a JWK Set (or of a single JWK), checked and given a ``kid``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RegistrationError(f"the JWK Set is not JSON: {exc}") from exc
    if isinstance(data, dict) and "keys" in data:
        items = data["keys"]
    elif isinstance(data, dict) and "kty" in data:
        items = [data]
    else:
        raise RegistrationError("expected a JWK Set ({'keys': [...]}) or one JWK")
    if not isinstance(items, list) or not items:
        raise RegistrationError("the JWK Set has no keys")
    keys = [_checked_key(item) for item in items]
    kids = [k["kid"] for k in keys]
    if len(set(kids)) != len(kids):
        raise RegistrationError("two keys in the JWK Set have the same kid")
    return keys


def _checked_key(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise RegistrationError("a key in the JWK Set is not an object")
    if any(member in item for member in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise RegistrationError("the JWK Set holds private key material; register public keys")
    alg = key_algorithm(item)
    if alg is None:
        raise RegistrationError(
            f"key type {item.get('kty')!r} ({item.get('crv', '')}) is not accepted: "
            "use RSA (RS384) or EC P-384 (ES384)"
        )
    if item.get("alg") not in (None, alg):
        raise RegistrationError(f"key alg {item.get('alg')!r} is not accepted; use {alg}")
    if item.get("use") not in (None, "sig"):
        raise RegistrationError("a key for 'use' other than 'sig' cannot sign assertions")
    try:
        key = jwt.PyJWK(item, algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError, TypeError) as exc:
        raise RegistrationError(f"a key in the JWK Set cannot be read: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise RegistrationError(f"RSA keys need at least {MIN_RSA_BITS} bits")
    out = dict(item)
    out.setdefault("kid", thumbprint(out))
    out["alg"] = alg
    return out


def generate_key(path: Path, kind: str = "ec") -> dict[str, Any]:
    """A new private key written to ``path`` (PEM, 0600); returns its public JWK."""
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if kind == "ec":
        private = ec.generate_private_key(ec.SECP384R1())
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise RegistrationError(f"key type {kind!r} is not one of ec, rsa")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RegistrationError(f"{path} exists; a key file is never overwritten") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    jwk = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}
    jwk["kid"] = thumbprint(jwk)
    jwk["alg"] = key_algorithm(jwk)
    jwk["use"] = "sig"
    return jwk


class ClientRegistry:
    def __init__(self, db: AuthDatabase, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def add(
        self, name: str, organization: str, scope: str, keys: Sequence[Mapping[str, Any]]
    ) -> RegisteredClient:
        if not valid_name(name):
            raise RegistrationError(
                f"client name {name!r}: letters, digits, '.', '_' and '-', at most 64"
            )
        if not _ORGANIZATION.match(organization):
            raise RegistrationError(f"{organization!r} is not a reference Organization/ID")
        if not scope.split():
            raise RegistrationError("a client needs at least one scope")
        if bad := well_formed(scope):
            raise RegistrationError(f"not SMART v2 scopes: {', '.join(bad)}")
        if not keys:
            raise RegistrationError("a client needs at least one public key")
        client = RegisteredClient(
            name, organization, " ".join(scope.split()), tuple(dict(k) for k in keys)
        )
        try:
            with self._db.writing() as session:
                session.add(
                    ClientRow(
                        name=client.name,
                        organization=client.organization,
                        scope=client.scope,
                        jwks=json.dumps({"keys": list(client.keys)}),
                        active=True,
                        created_at=int(self._clock()),
                    )
                )
        except IntegrityError:
            raise RegistrationError(f"a client named {name!r} is already registered") from None
        return client

    def get(self, name: str) -> RegisteredClient | None:
        with self._db.reading() as session:
            row = session.get(ClientRow, name)
            return None if row is None else _client(row)

    def all(self) -> list[RegisteredClient]:
        with self._db.reading() as session:
            rows = session.scalars(select(ClientRow).order_by(ClientRow.name)).all()
            return [_client(row) for row in rows]

    def set_active(self, name: str, active: bool) -> bool:
        with self._db.writing() as session:
            row = session.get(ClientRow, name)
            if row is None:
                return False
            row.active = active
            return True

    def remove(self, name: str) -> bool:
        with self._db.writing() as session:
            result = session.execute(delete(ClientRow).where(ClientRow.name == name))
            return bool(getattr(result, "rowcount", 0))


def _client(row: ClientRow) -> RegisteredClient:
    keys = tuple(json.loads(row.jwks)["keys"])
    return RegisteredClient(row.name, row.organization, row.scope, keys, row.active)
