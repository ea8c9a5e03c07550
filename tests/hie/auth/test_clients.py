"""Client registration: which keys are accepted, generated keys, granted scopes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hie.app import Services
from hie.auth.clients import RegistrationError, generate_key, parse_jwks, thumbprint
from hie.auth.scopes import grant
from tests.hie.auth.helpers import public_jwk


def test_scopes_are_granted_permission_by_permission() -> None:
    registered = "system/*.rs system/Patient.cruds card.identify"
    assert grant("system/Observation.cruds", registered) == "system/Observation.rs"
    assert grant("system/Patient.cruds", registered) == "system/Patient.cruds"
    assert grant("system/*.cruds", registered) == "system/*.rs"
    assert grant("system/Patient.read system/Patient.write", registered) == (
        "system/Patient.rs system/Patient.cud"
    )
    assert grant("card.identify card.issue", registered) == "card.identify"
    assert grant("user/*.rs patient/Patient.r", registered) == ""
    assert grant("system/*.c", "system/Patient.c") == ""  # a type never widens to '*'
    assert grant("system/Patient.rs?category=x", registered) == ""
    assert grant("system/Patient.rs system/Patient.rs", registered) == "system/Patient.rs"


def test_public_ec_p384_and_rsa_keys_are_accepted_with_a_kid() -> None:
    ec_jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True)
    rsa_jwk = RSAAlgorithm.to_jwk(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), as_dict=True
    )
    keys = parse_jwks(json.dumps({"keys": [ec_jwk, {**rsa_jwk, "kid": "mine"}]}))
    assert [k["alg"] for k in keys] == ["ES384", "RS384"]
    assert keys[0]["kid"] == thumbprint(ec_jwk)
    assert keys[1]["kid"] == "mine"
    assert parse_jwks(json.dumps(ec_jwk))[0]["kid"] == thumbprint(ec_jwk)


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "JWK Set"),
        ('{"keys": []}', "no keys"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "private"),
        ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}', "not accepted"),
    ],
)
def test_unusable_jwks_are_refused(jwks: str, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        parse_jwks(jwks)


def test_private_weak_or_wrong_curve_keys_are_refused() -> None:
    private = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()), as_dict=True)
    with pytest.raises(RegistrationError, match="private"):
        parse_jwks(json.dumps({"keys": [private]}))
    p256 = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    with pytest.raises(RegistrationError, match="P-384"):
        parse_jwks(json.dumps(p256))
    weak = RSAAlgorithm.to_jwk(
        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(), as_dict=True
    )
    with pytest.raises(RegistrationError, match="2048"):
        parse_jwks(json.dumps(weak))
    p384 = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True)
    with pytest.raises(RegistrationError, match="alg"):
        parse_jwks(json.dumps({**p384, "alg": "ES256"}))
    with pytest.raises(RegistrationError, match="same kid"):
        parse_jwks(json.dumps({"keys": [{**p384, "kid": "a"}, {**p384, "kid": "a"}]}))


@pytest.mark.parametrize(("kind", "alg"), [("ec", "ES384"), ("rsa", "RS384")])
def test_generated_keys_are_private_files_and_never_overwritten(
    tmp_path: Path, kind: str, alg: str
) -> None:
    path = tmp_path / "client.pem"
    jwk = generate_key(path, kind)
    assert jwk["alg"] == alg
    assert jwk["kid"] == thumbprint(jwk)
    assert "d" not in jwk
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    assert public_jwk(private)["kty"] == jwk["kty"]
    with pytest.raises(RegistrationError, match="never overwritten"):
        generate_key(path, kind)


def test_the_registry_checks_and_keeps_registrations(services: Services, tmp_path: Path) -> None:
    keys = [generate_key(tmp_path / "k.pem")]
    clients = services.auth.clients
    added = clients.add("his-a", "Organization/hosp-a", "system/*.rs  card.identify", keys)
    assert added.scope == "system/*.rs card.identify"
    assert clients.get("his-a") == added
    with pytest.raises(RegistrationError, match="already"):
        clients.add("his-a", "Organization/hosp-a", "system/*.rs", keys)
    with pytest.raises(RegistrationError, match="Organization"):
        clients.add("his-b", "Practitioner/1", "system/*.rs", keys)
    with pytest.raises(RegistrationError, match="SMART"):
        clients.add("his-b", "Organization/b", "system/Patient.xyz", keys)
    with pytest.raises(RegistrationError, match="name"):
        clients.add("no spaces", "Organization/b", "system/*.rs", keys)
    assert clients.set_active("his-a", False)
    assert clients.get("his-a") is not None
    assert not clients.get("his-a").active
    assert [c.name for c in clients.all()] == ["his-a"]
    assert clients.remove("his-a")
    assert clients.get("his-a") is None
