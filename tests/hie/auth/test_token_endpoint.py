"""POST /auth/token: SMART Backend Services grants, and every way an assertion is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from hie.app import Services
from hie.audit.event import event_of
from tests.hie.auth.helpers import Client, new_key, register


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def client(services: Services) -> Client:
    return register(services)


def post(http: FlaskClient, form: dict[str, str]) -> Any:
    return http.post("/auth/token", data=form)


def refused(response: Any, error: str, status: int | None = None) -> dict[str, Any]:
    assert response.status_code == (status or (401 if error == "invalid_client" else 400))
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    assert body["error"] == error
    assert body["error_description"]
    return body


def audit_rows(services: Services, action: str) -> list[tuple[str, str, str | None]]:
    """(actor, outcome, detail) of the audit records of ``action``, oldest first."""
    from sqlalchemy import text

    services.audit.close()  # flushes the group-commit writer
    with services.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT agent, outcome, content, recorded_us FROM audit_event "
                "WHERE subtype = :a ORDER BY seq"
            ),
            {"a": action},
        ).all()
    words = {"0": "success"}
    return [
        (r[0], words.get(r[1], "failure"), event_of(r[2], _when(r[3])).get("outcomeDesc"))
        for r in rows
    ]


def _when(recorded_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=recorded_us)


def test_a_registered_client_gets_a_short_lived_token_it_can_use(
    http: FlaskClient, client: Client, services: Services
) -> None:
    response = post(http, client.form(scope="system/Patient.rs system/Observation.r"))
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == services.settings.auth.client_token_ttl == 300
    assert body["scope"] == "system/Patient.rs system/Observation.r"
    claims = services.verifier.verify(body["access_token"])
    assert claims.subject == "his-a"
    assert claims.organization == "Organization/hosp-a"
    assert claims.expires - time.time() <= 300
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert http.get("/fhir/Patient", headers=bearer).status_code == 200
    assert http.get("/fhir/Observation?code=x", headers=bearer).status_code == 403
    assert audit_rows(services, "token")[-1][:2] == ("his-a", "success")


def test_granted_scopes_are_the_intersection_of_requested_and_registered(
    http: FlaskClient, client: Client
) -> None:
    body = post(http, client.form(scope="system/Patient.cruds system/Encounter.cruds")).get_json()
    # Registered: system/*.rs and system/Patient.cruds.
    assert body["scope"] == "system/Patient.cruds system/Encounter.rs"
    body = post(http, client.form(scope="system/*.cruds card.identify")).get_json()
    assert body["scope"] == "system/*.rs"
    refused(post(http, client.form(scope="user/*.rs patient/*.rs")), "invalid_scope")


def test_rs384_clients_are_accepted_too(http: FlaskClient, services: Services) -> None:
    rsa_client = register(services, "pacs-b", "Organization/hosp-b", "system/*.rs", kind="rsa")
    assert post(http, rsa_client.form()).status_code == 200


def test_smart_configuration_is_published(http: FlaskClient, services: Services) -> None:
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        body = http.get(path).get_json()
        assert body["token_endpoint"] == services.settings.token_url
        assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert set(body["token_endpoint_auth_signing_alg_values_supported"]) == {
            "RS384",
            "ES384",
        }
        assert "client-confidential-asymmetric" in body["capabilities"]
    security = http.get("/fhir/metadata").get_json()["rest"][0]["security"]
    uris = security["extension"][0]
    assert uris["extension"] == [{"url": "token", "valueUri": services.settings.token_url}]


# -- attacks on the assertion -------------------------------------------------------


def test_a_tampered_assertion_is_refused(http: FlaskClient, client: Client) -> None:
    header, _payload, signature = client.assertion().split(".")
    claims = jwt.decode(client.assertion(), options={"verify_signature": False})
    claims["iss"] = claims["sub"] = client.name  # same client, but a changed jti
    claims["jti"] = "forged"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    tampered = f"{header}.{forged.decode()}.{signature}"
    assert (
        "signature"
        in refused(post(http, client.form(tampered)), "invalid_client")["error_description"]
    )


def test_an_expired_assertion_is_refused(http: FlaskClient, client: Client) -> None:
    now = int(time.time())
    stale = client.assertion(exp=now - 120, iat=now - 300)
    assert (
        "expired" in refused(post(http, client.form(stale)), "invalid_client")["error_description"]
    )


def test_an_assertion_living_over_five_minutes_is_refused(
    http: FlaskClient, client: Client
) -> None:
    now = int(time.time())
    refused(post(http, client.form(client.assertion(exp=now + 3600))), "invalid_client")
    # A long-lived assertion is refused even while its exp is near, through its iat.
    refused(post(http, client.form(client.assertion(iat=now - 600))), "invalid_client")


def test_a_replayed_jti_is_refused(http: FlaskClient, client: Client) -> None:
    assertion = client.assertion(jti="only-once")
    assert post(http, client.form(assertion)).status_code == 200
    body = refused(post(http, client.form(assertion)), "invalid_client")
    assert "replay" in body["error_description"]
    # A fresh assertion reusing the jti is a replay too.
    refused(post(http, client.form(client.assertion(jti="only-once"))), "invalid_client")


def test_the_replay_check_survives_a_restart(
    http: FlaskClient, client: Client, settings: Any
) -> None:
    from hie.app import build_services, create_app

    assertion = client.assertion()
    assert post(http, client.form(assertion)).status_code == 200
    other = build_services(settings)  # another worker, or after a restart
    try:
        second = create_app(services=other).test_client()
        refused(post(second, client.form(assertion)), "invalid_client")
    finally:
        other.close()


def test_a_wrong_audience_is_refused(http: FlaskClient, client: Client) -> None:
    for aud in ("hie", "https://elsewhere.example/auth/token", ["https://x.example/token"]):
        body = refused(post(http, client.form(client.assertion(aud=aud))), "invalid_client")
        assert "aud" in body["error_description"]


def test_alg_none_is_refused(http: FlaskClient, client: Client) -> None:
    unsigned = client.assertion(alg="none", key=None)
    assert (
        "alg" in refused(post(http, client.form(unsigned)), "invalid_client")["error_description"]
    )
    # Also with the registered alg named but the signature stripped.
    header, payload, _ = client.assertion().split(".")
    refused(post(http, client.form(f"{header}.{payload}.")), "invalid_client")


def test_hs256_signed_with_the_public_key_is_refused(http: FlaskClient, client: Client) -> None:
    public_pem = client.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # PyJWT itself refuses to HMAC with a PEM; build the token as an attacker would.
    header = {"alg": "HS256", "typ": "JWT", "kid": client.kid}
    now = int(time.time())
    claims = {
        "iss": client.name,
        "sub": client.name,
        "aud": client.token_url,
        "exp": now + 200,
        "jti": "hs",
    }
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
        for part in (header, claims)
    ]
    signing_input = b".".join(segments)
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
    refused(post(http, client.form(token)), "invalid_client")


def test_an_assertion_signed_with_another_key_is_refused(http: FlaskClient, client: Client) -> None:
    refused(post(http, client.form(client.assertion(key=new_key()))), "invalid_client")
    # The right key type under another alg (ES256 on a P-256 key) is refused as well.
    p256 = ec.generate_private_key(ec.SECP256R1())
    refused(post(http, client.form(client.assertion(alg="ES256", key=p256))), "invalid_client")


def test_an_unknown_or_disabled_client_is_refused(
    http: FlaskClient, client: Client, services: Services
) -> None:
    ghost = Client("ghost", client.key, client.kid, client.alg, client.token_url)
    refused(post(http, ghost.form()), "invalid_client")
    services.auth.clients.set_active(client.name, False)
    refused(post(http, client.form()), "invalid_client")
    failures = [r for r in audit_rows(services, "token") if r[1] == "failure"]
    assert {r[0] for r in failures} == {"ghost", client.name}


def test_iss_and_sub_must_both_name_the_client(
    http: FlaskClient, client: Client, services: Services
) -> None:
    register(services, "his-b", "Organization/hosp-b", "system/*.rs")
    refused(post(http, client.form(client.assertion(sub="his-b"))), "invalid_client")
    refused(post(http, client.form(client.assertion(jti=None))), "invalid_client")
    refused(post(http, client.form(client.assertion(kid="not-a-key"))), "invalid_client")


def test_malformed_requests_get_oauth_errors(http: FlaskClient, client: Client) -> None:
    form = client.form()
    refused(post(http, {**form, "grant_type": "password"}), "unsupported_grant_type")
    refused(post(http, {k: v for k, v in form.items() if k != "grant_type"}), "invalid_request")
    refused(post(http, {**form, "client_assertion_type": "basic"}), "invalid_request")
    refused(post(http, {**form, "client_assertion": ""}), "invalid_request")
    refused(post(http, {k: v for k, v in form.items() if k != "scope"}), "invalid_request")
    refused(post(http, {**form, "client_assertion": "not.a.jwt"}), "invalid_client")
    refused(post(http, {**form, "client_assertion": "x" * 5000}), "invalid_client")
    as_json = http.post("/auth/token", json=form)
    refused(as_json, "invalid_request")
    twice = http.post(
        "/auth/token",
        data="grant_type=client_credentials&grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
    )
    refused(twice, "invalid_request")


def test_control_characters_in_claims_are_refused_not_stored(
    http: FlaskClient, client: Client, services: Services
) -> None:
    """PostgreSQL text cannot hold NUL: such claims must be refused before the database."""
    nul = Client("his\x00a", client.key, client.kid, client.alg, client.token_url)
    refused(post(http, nul.form()), "invalid_client")
    refused(post(http, client.form(client.assertion(jti="a\x00b"))), "invalid_client")
    assert post(http, client.form(client.assertion(jti="after"))).status_code == 200
    actors = [r[0] for r in audit_rows(services, "token")]
    assert "his?a" in actors
