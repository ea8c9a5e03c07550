"""The web UI: sign-in with CSRF protection, rate limits, TOTP, sessions, patient search."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from hie.app import Services
from hie.auth import totp
from tests.support import Api

PASSWORD = "correct horse battery"


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    return app.test_client()


def add_clinician(services: Services, login: str = "dr.li", *, with_totp: bool = False) -> str:
    _, secret = services.auth.accounts.add(
        login,
        PASSWORD,
        practitioner="Practitioner/li",
        role="PractitionerRole/li-cardio",
        organization="Organization/hosp-a",
        with_totp=with_totp,
    )
    return secret or ""


def csrf(page: Any) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, page.get_data(as_text=True)
    return match.group(1)


def sign_in(
    browser: FlaskClient, login: str = "dr.li", password: str = PASSWORD, code: str = ""
) -> Any:
    token = csrf(browser.get("/ui/login"))
    form = {"csrf_token": token, "login": login, "password": password, "code": code}
    return browser.post("/ui/login", data=form)


def audit(services: Services, action: str) -> list[tuple[str, str]]:
    services.audit.close()  # flushes the group-commit writer
    with services.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT agent, outcome FROM audit_event WHERE subtype = :a ORDER BY seq"),
            {"a": action},
        ).all()
    return [(r[0], "success" if r[1] == "0" else "failure") for r in rows]


def test_pages_need_a_session(browser: FlaskClient) -> None:
    for path in ("/ui/", "/ui/patients?q=x"):
        response = browser.get(path)
        assert response.status_code == 303
        assert response.headers["Location"] == "/ui/login"
    page = browser.get("/ui/login")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def hospital_api(app: Flask, services: Services) -> Api:
    """Writes as hosp-a: its clinicians see its own records without a consent."""
    token = services.issuer.issue(
        subject="his-a", scope="system/*.cruds", ttl=600, organization="Organization/hosp-a"
    )
    return Api(app.test_client(), token)


def test_sign_in_search_and_sign_out(browser: FlaskClient, services: Services, app: Flask) -> None:
    add_clinician(services)
    api = hospital_api(app, services)
    for family, given in (("王", "小东"), ("Wang", "Xiaodong"), ("Li", "Na")):
        created = api.post(
            "Patient",
            {
                "resourceType": "Patient",
                "name": [{"family": family, "given": [given]}],
                "identifier": [{"system": "urn:mrn:hosp-a", "value": f"mrn-{given}"}],
            },
        )
        assert created.status_code == 201
    response = sign_in(browser)
    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/ui" in cookie
    home = browser.get("/ui/")
    assert home.status_code == 200
    assert "Practitioner/li" in home.get_data(as_text=True)

    found = browser.get("/ui/patients?by=name&q=Wang").get_data(as_text=True)
    assert "Xiaodong Wang" in found
    assert "Na Li" not in found
    # The hospital's record and the person's enterprise record (master patient index).
    assert found.count('<tr class="hospital">') == 1
    assert found.count('<tr class="enterprise">') <= 1
    found = browser.get("/ui/patients?by=identifier&q=urn:mrn:hosp-a|mrn-Na").get_data(as_text=True)
    assert "Na Li" in found
    assert "小东 王" in browser.get("/ui/patients?q=王").get_data(as_text=True)
    searches = audit(services, "search")
    assert searches[-1][0] == "user:dr.li"

    token = csrf(browser.get("/ui/"))
    assert browser.post("/ui/logout", data={"csrf_token": "forged"}).status_code == 403
    assert browser.get("/ui/").status_code == 200  # still signed in
    out = browser.post("/ui/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert out.headers["Location"] == "/ui/login"
    assert browser.get("/ui/").status_code == 303
    assert list(audit(services, "login")) == [("user:dr.li", "success")]
    assert audit(services, "logout") == [("user:dr.li", "success")]


def test_search_results_are_escaped(browser: FlaskClient, services: Services, app: Flask) -> None:
    add_clinician(services)
    hostile = "<script>alert(1)</script>"
    api = hospital_api(app, services)
    api.post("Patient", {"resourceType": "Patient", "name": [{"family": hostile}]})
    sign_in(browser)
    page = browser.get("/ui/patients?by=name&q=" + hostile).get_data(as_text=True)
    assert hostile not in page
    assert '<tr class="hospital">' in page  # the patient is listed, escaped
    assert "&lt;script&gt;" in page


def test_a_scope_the_account_lacks_is_a_403_page(browser: FlaskClient, services: Services) -> None:
    services.auth.accounts.add(
        "nurse",
        PASSWORD,
        practitioner="Practitioner/n",
        role="PractitionerRole/n",
        organization="Organization/hosp-a",
        scope="user/Observation.rs",
    )
    sign_in(browser, "nurse")
    response = browser.get("/ui/patients?q=Wang")
    assert response.status_code == 403
    assert "scopes" in response.get_data(as_text=True)


def test_sign_in_without_the_csrf_token_is_refused(
    browser: FlaskClient, services: Services
) -> None:
    add_clinician(services)
    form = {"login": "dr.li", "password": PASSWORD}
    assert browser.post("/ui/login", data=form).status_code == 403
    browser.get("/ui/login")  # the cookie is set, but the form lacks the token
    assert browser.post("/ui/login", data={**form, "csrf_token": "guess"}).status_code == 403
    assert browser.get("/ui/").status_code == 303


def test_wrong_passwords_are_refused_then_throttled(
    browser: FlaskClient, services: Services
) -> None:
    add_clinician(services)
    limit = services.settings.auth.login_account_failures
    for _ in range(limit):
        response = sign_in(browser, password="not the password")
        assert response.status_code == 401
        assert "Wrong login, password or one-time code" in response.get_data(as_text=True)
    throttled = sign_in(browser)  # even the right password, now
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert browser.get("/ui/").status_code == 303
    outcomes = audit(services, "login")
    assert outcomes == [("user:dr.li", "failure")] * (limit + 1)
    assert sign_in(browser, "nobody").status_code == 401


def test_totp_accounts_need_the_code(browser: FlaskClient, services: Services) -> None:
    secret = add_clinician(services, with_totp=True)
    assert sign_in(browser).status_code == 401
    assert sign_in(browser, code="123456").status_code in (401, 303)

    response = sign_in(browser, code=totp.code_at(secret, time.time()))
    if response.status_code == 401:  # the guess above happened to be the code (1 in 10^6)
        response = sign_in(browser, code=totp.code_at(secret, time.time() + totp.STEP))
    assert response.status_code == 303
    assert browser.get("/ui/").status_code == 200


def test_a_stolen_cookie_from_before_login_is_not_a_session(
    browser: FlaskClient, services: Services
) -> None:
    """Session fixation: sign-in issues a new session token, whatever cookie came in."""
    add_clinician(services)
    browser.set_cookie("hie_session", "attacker-chosen", path="/ui")
    response = sign_in(browser)
    assert "attacker-chosen" not in response.headers["Set-Cookie"]
    assert services.auth.logins.sessions.find("attacker-chosen") is None


def test_control_characters_in_a_login_are_refused(
    browser: FlaskClient, services: Services
) -> None:
    add_clinician(services)
    assert sign_in(browser, "dr.li\x00").status_code == 401
    assert sign_in(browser, "dr.\nli").status_code == 401
    assert sign_in(browser).status_code == 303
    assert audit(services, "login")[0] == ("user:dr.li?", "failure")
