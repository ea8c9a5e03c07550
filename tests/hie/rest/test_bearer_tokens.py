"""Access tokens at the FHIR API: forged, stale or mis-scoped tokens are refused with an
OperationOutcome (401 for the token, 403 for a scope), on the search path and on the
fast instance-read path alike."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hie.app import Services
from hie.auth.keys import load_or_create_signing_key
from hie.auth.tokens import TokenIssuer
from tests.support import Api


@pytest.fixture
def patient_id(api: Api) -> str:
    response = api.post("Patient", {"resourceType": "Patient", "gender": "female"})
    assert response.status_code == 201
    return str(response.get_json()["id"])


def issuer(services: Services, **overrides: Any) -> TokenIssuer:
    auth = services.settings.auth
    return TokenIssuer(
        overrides.get("key") or load_or_create_signing_key(services.settings.data_dir),
        issuer=overrides.get("issuer", auth.issuer),
        audience=overrides.get("audience", auth.audience),
        clock=overrides.get("clock", lambda: datetime.now(UTC)),
    )


def mint(services: Services, scope: str = "system/*.cruds", **overrides: Any) -> str:
    return issuer(services, **overrides).issue(subject="attacker", scope=scope, ttl=600)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assert_refused(api: Api, token: str, patient_id: str, status: int = 401) -> None:
    for path in ("Patient", f"Patient/{patient_id}"):
        response = api.get(path, token=token)
        assert response.status_code == status, (path, response.get_json())
        body = response.get_json()
        assert body["resourceType"] == "OperationOutcome"
        if status == 401:
            assert body["issue"][0]["code"] == "login"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            assert body["issue"][0]["code"] == "forbidden"


def test_a_valid_token_reads(api: Api, services: Services, patient_id: str) -> None:
    assert api.get(f"Patient/{patient_id}", token=mint(services)).status_code == 200


def test_no_token_or_another_scheme_is_401(api: Api, patient_id: str) -> None:
    for header in ({}, {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer "}):
        for path in ("/fhir/Patient", f"/fhir/Patient/{patient_id}"):
            response = api.client.get(path, headers=header)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_tampered_token_is_refused(api: Api, services: Services, patient_id: str) -> None:
    header, payload, signature = mint(services, scope="system/Observation.r").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "system/*.cruds"  # escalate
    forged = b64(json.dumps(claims).encode())
    assert_refused(api, f"{header}.{forged}.{signature}", patient_id)
    assert_refused(api, f"{header}.{payload}.{signature[:-4]}AAAA", patient_id)


def test_an_expired_token_is_refused(api: Api, services: Services, patient_id: str) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    assert_refused(api, mint(services, clock=lambda: past), patient_id)


def test_a_wrong_audience_or_issuer_is_refused(
    api: Api, services: Services, patient_id: str
) -> None:
    assert_refused(api, mint(services, audience="another-server"), patient_id)
    assert_refused(api, mint(services, issuer="someone-else"), patient_id)


def test_alg_none_is_refused(api: Api, services: Services, patient_id: str) -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": services.settings.auth.issuer,
        "aud": services.settings.auth.audience,
        "sub": "attacker",
        "iat": now,
        "exp": now + 600,
        "jti": "x",
        "scope": "system/*.cruds",
    }
    assert_refused(api, jwt.encode(claims, None, algorithm="none"), patient_id)


def test_hs256_signed_with_the_servers_public_key_is_refused(
    api: Api, services: Services, patient_id: str
) -> None:
    public = load_or_create_signing_key(services.settings.data_dir).public_key()
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": services.settings.auth.issuer,
        "aud": services.settings.auth.audience,
        "sub": "attacker",
        "iat": now,
        "exp": now + 600,
        "jti": "x",
        "scope": "system/*.cruds",
    }
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    for secret in (
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
    ):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert_refused(api, f"{signing_input}.{b64(mac)}", patient_id)


def test_a_token_signed_with_another_key_is_refused(
    api: Api, services: Services, patient_id: str
) -> None:
    assert_refused(api, mint(services, key=Ed25519PrivateKey.generate()), patient_id)


def test_missing_scopes_are_403(api: Api, services: Services, patient_id: str) -> None:
    assert_refused(api, mint(services, scope="system/Observation.rs"), patient_id, status=403)
    assert_refused(api, mint(services, scope="card.identify"), patient_id, status=403)
    read_only = mint(services, scope="system/Patient.rs")
    created = api.post("Patient", {"resourceType": "Patient"}, token=read_only)
    assert created.status_code == 403
    assert created.get_json()["issue"][0]["code"] == "forbidden"
    deleted = api.delete(f"Patient/{patient_id}", token=read_only)
    assert deleted.status_code == 403
