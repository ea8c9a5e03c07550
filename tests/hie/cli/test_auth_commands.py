"""``hie client``, ``hie token --client`` and ``hie user`` against a real ``hie serve``:
a hospital system gets tokens over HTTP, and a clinician signs in with a browser session."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from hie.auth.assertions import CLIENT_ASSERTION_TYPE
from hie.auth.clients import thumbprint
from tests.hie.auth.helpers import public_jwk
from tests.support import RunningServer, running_server, server_env

PASSWORD = "correct horse battery"


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    env = server_env(db_url, tmp_path / "var", HIE_AUTH_PASSWORD_LOG2_N="12")
    with running_server(env) as running:
        yield running


def hie(server: RunningServer, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hie", *args],
        env=server.env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_registered_client_gets_tokens_over_http(server: RunningServer, tmp_path: Path) -> None:
    pem = tmp_path / "his-a.pem"
    added = hie(
        server,
        "client",
        "add",
        "his-a",
        "--org",
        "Organization/hosp-a",
        "--scope",
        "system/*.rs system/Patient.c",
        "--generate-key",
        str(pem),
    )
    assert added.returncode == 0, added.stderr
    assert "/auth/token" in added.stdout
    again = hie(server, "client", "add", "his-a", "--org", "Organization/x", "--scope", "system/*.rs",
                "--generate-key", str(tmp_path / "other.pem"))  # fmt: skip
    assert again.returncode != 0
    assert "already registered" in again.stderr
    assert "his-a" in hie(server, "client", "list").stdout

    key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    config = requests.get(server.base + "/.well-known/smart-configuration", timeout=10).json()
    token_url = config["token_endpoint"]
    assert token_url == server.base + "/auth/token"
    now = int(time.time())
    claims = {
        "iss": "his-a",
        "sub": "his-a",
        "aud": token_url,
        "exp": now + 120,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode(
        claims,
        key,  # type: ignore[arg-type]
        algorithm="ES384",
        headers={"kid": thumbprint(public_jwk(key))},  # type: ignore[arg-type]
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": "system/Patient.crs system/Observation.rs",
    }
    response = requests.post(token_url, data=form, timeout=10)
    assert response.status_code == 200, response.text
    granted = response.json()
    assert granted["scope"] == "system/Patient.crs system/Observation.rs"
    bearer = {"Authorization": f"Bearer {granted['access_token']}"}
    fhir = {**bearer, "Content-Type": "application/fhir+json"}
    created = requests.post(
        server.fhir + "/Patient", json={"resourceType": "Patient"}, headers=fhir, timeout=10
    )
    assert created.status_code == 201
    assert requests.get(server.fhir + "/Patient", headers=bearer, timeout=10).status_code == 200
    deleted = requests.delete(
        server.fhir + "/Patient/" + created.json()["id"], headers=bearer, timeout=10
    )
    assert deleted.status_code == 403
    # Replays are refused whichever worker process answers.
    for _ in range(4):
        replay = requests.post(token_url, data=form, timeout=10)
        assert replay.status_code == 401
        assert replay.json()["error"] == "invalid_client"

    minted = hie(server, "token", "--client", "his-a", "--purpose", "TREAT")
    assert minted.returncode == 0, minted.stderr
    admin = {"Authorization": f"Bearer {minted.stdout.strip()}"}
    assert requests.get(server.fhir + "/Patient", headers=admin, timeout=10).status_code == 200
    narrowed = hie(server, "token", "--client", "his-a", "--scope", "system/Patient.cruds")
    token = jwt.decode(narrowed.stdout.strip(), options={"verify_signature": False})
    assert token["scope"] == "system/Patient.crs"
    assert token["org"] == "Organization/hosp-a"
    assert token["exp"] - token["iat"] == 300
    assert hie(server, "token", "--client", "nobody").returncode != 0
    assert hie(server, "token", "--purpose", "BTG").returncode != 0  # no reason given

    assert hie(server, "client", "disable", "his-a").returncode == 0
    form["client_assertion"] = jwt.encode(
        {**claims, "jti": uuid.uuid4().hex},
        key,  # type: ignore[arg-type]
        algorithm="ES384",
    )
    assert requests.post(token_url, data=form, timeout=10).status_code == 401


def test_a_clinician_signs_in_with_a_browser(server: RunningServer) -> None:
    admin = {"Authorization": f"Bearer {server.token()}", "Content-Type": "application/fhir+json"}

    def put(resource: dict[str, object]) -> None:
        url = f"{server.fhir}/{resource['resourceType']}/{resource['id']}"
        assert requests.put(url, json=resource, headers=admin, timeout=10).status_code in (200, 201)

    put({"resourceType": "Organization", "id": "hosp-a", "name": "绵阳市中心医院"})
    put({"resourceType": "Practitioner", "id": "li", "name": [{"family": "李"}]})
    put(
        {
            "resourceType": "PractitionerRole",
            "id": "li-cardio",
            "practitioner": {"reference": "Practitioner/li"},
            "organization": {"reference": "Organization/hosp-a"},
        }
    )
    put({"resourceType": "Patient", "id": "p1", "name": [{"family": "张", "given": ["伟"]}]})
    links = ["--practitioner", "Practitioner/li", "--role", "PractitionerRole/li-cardio"]
    wrong = hie(server, "user", "add", "dr.li", *links, "--org", "Organization/other",
                "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert wrong.returncode != 0
    added = hie(server, "user", "add", "dr.li", *links, "--org", "Organization/hosp-a",
                "--password-stdin", "--totp", stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    secret = re.search(r"TOTP secret: (\w+)", added.stdout)
    assert secret is not None
    assert "otpauth://totp/" in added.stdout

    import pyotp

    browser = requests.Session()
    page = browser.get(server.base + "/ui/login", timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    form = {"csrf_token": csrf.group(1), "login": "dr.li", "password": PASSWORD}
    assert browser.post(server.base + "/ui/login", data=form, timeout=10).status_code == 401
    form["code"] = pyotp.TOTP(secret.group(1)).now()
    signed_in = browser.post(server.base + "/ui/login", data=form, timeout=10)
    assert signed_in.status_code == 200  # followed the redirect to /ui/
    assert signed_in.url == server.base + "/ui/"
    assert "PractitionerRole/li-cardio" in signed_in.text
    found = browser.get(server.base + "/ui/patients", params={"q": "张"}, timeout=10)
    assert "伟 张" in found.text
    assert "Patient/p1" in found.text
    # The session cookie opens nothing at /fhir: the FHIR API takes bearer tokens only.
    assert browser.get(server.fhir + "/Patient", timeout=10).status_code == 401

    assert "dr.li" in hie(server, "user", "list").stdout
    assert hie(server, "user", "disable", "dr.li").returncode == 0
    assert browser.get(server.base + "/ui/", timeout=10, allow_redirects=False).status_code == 303
