"""Making clients, keys and signed assertions the way a hospital system would."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hie.app import Services
from hie.auth.assertions import CLIENT_ASSERTION_TYPE
from hie.auth.clients import parse_jwks

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class Client:
    name: str
    key: PrivateKey
    kid: str
    alg: str
    token_url: str

    def assertion(self, **overrides: Any) -> str:
        """A valid assertion; ``overrides`` replace claims (None removes one)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.name,
            "sub": self.name,
            "aud": self.token_url,
            "exp": now + 240,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": overrides.pop("kid", self.kid)}
        alg = overrides.pop("alg", self.alg)
        key = overrides.pop("key", self.key)
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, key, algorithm=alg, headers=headers)

    def form(self, assertion: str | None = None, scope: str = "system/*.rs") -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion or self.assertion(),
            "scope": scope,
        }


def new_key(kind: str = "ec") -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return jwk


def register(
    services: Services,
    name: str = "his-a",
    organization: str = "Organization/hosp-a",
    scope: str = "system/*.rs system/Patient.cruds",
    kind: str = "ec",
) -> Client:
    key = new_key(kind)
    jwks = parse_jwks(json.dumps({"keys": [public_jwk(key)]}))
    services.auth.clients.add(name, organization, scope, jwks)
    alg = "ES384" if kind == "ec" else "RS384"
    return Client(name, key, jwks[0]["kid"], alg, services.auth.token_url)
