"""The clinicians' web UI: sign in, sign out, and a patient search through the exchange.

Pages are rendered on the server (Jinja, autoescaped). Every POST carries a CSRF token:
before sign-in a double-submit token (cookie and form field must match), afterwards the
token stored with the session. A signed-in clinician calls the exchange with the
account's ``user/`` scopes, organisation, Practitioner and PractitionerRole.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any

import orjson
from flask import Blueprint, Response, make_response, render_template, request

from hie.auth.login import LoginOutcome, Logins, clean_login
from hie.auth.sessions import WebSession
from hie.context import RequestContext
from hie.errors import FhirError
from hie.exchange import Exchange, StoredResource

SESSION_COOKIE = "hie_session"
CSRF_COOKIE = "hie_csrf"
_SEARCH_KEYS = {"name": "name", "identifier": "identifier"}
_MAX_QUERY = 200
# The master patient index tags each person's enterprise ("golden") Patient.
_IDENTITY_TAG = "urn:hie:identity"
_PAGE = 20
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _see_other(location: str) -> Response:
    return Response(status=303, headers={"Location": location})


def _same(a: str | None, b: str | None) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and these come from the client.
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def patient_row(stored: StoredResource) -> dict[str, str]:
    """What the result list shows of a Patient."""
    patient: dict[str, Any] = orjson.loads(stored.content)
    names = []
    for name in patient.get("name") or []:
        if name.get("text"):
            names.append(str(name["text"]))
        else:
            parts = [*(name.get("given") or []), name.get("family") or ""]
            names.append(" ".join(str(p) for p in parts if p))
    identifiers = [
        f"{i.get('system', '')}|{i.get('value', '')}" for i in patient.get("identifier") or []
    ]
    tags = (patient.get("meta") or {}).get("tag") or []
    enterprise = any(
        t.get("system") == _IDENTITY_TAG and t.get("code") == "enterprise" for t in tags
    )
    return {
        "record": "enterprise" if enterprise else "hospital",
        "id": stored.id,
        "name": "; ".join(n for n in names if n) or "(no name)",
        "gender": str(patient.get("gender", "")),
        "birth_date": str(patient.get("birthDate", "")),
        "identifiers": ", ".join(identifiers),
    }


def create_ui_blueprint(
    logins: Logins, exchange: Exchange, *, secure_cookies: bool = False
) -> Blueprint:
    bp = Blueprint("ui", __name__, template_folder="templates")
    sessions = logins.sessions

    def address() -> str:
        return (request.remote_addr or "unknown")[:64]

    def cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/ui",
            secure=secure_cookies,
            httponly=True,
            samesite="Strict" if name == CSRF_COOKIE else "Lax",
        )

    def current() -> WebSession | None:
        return sessions.find(request.cookies.get(SESSION_COOKIE))

    def context(session: WebSession) -> RequestContext:
        return session.account.context(source=address(), session_id=session.id)

    def login_page(error: str | None = None, status: int = 200) -> Response:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        body = render_template("login.html", csrf_token=token, error=error)
        response = make_response(body, status)
        cookie(response, CSRF_COOKIE, token, None)
        return response

    def signed_in(view: Callable[[WebSession], Response]) -> Callable[[], Response]:
        def wrapper() -> Response:
            session = current()
            if session is None:
                return _see_other("/ui/login")
            return view(session)

        wrapper.__name__ = view.__name__
        return wrapper

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers.update(_HEADERS)
        return response

    @bp.errorhandler(FhirError)
    def _error(error: FhirError) -> Response:
        body = render_template("error.html", message=error.message, status=error.status)
        return make_response(body, error.status)

    @bp.get("/login")
    def login_form() -> Response:
        if current() is not None:
            return _see_other("/ui/")
        return login_page()

    @bp.post("/login")
    def login() -> Response:
        if not _same(request.cookies.get(CSRF_COOKIE), request.form.get("csrf_token")):
            return login_page("Your sign-in form expired; please try again.", 403)
        name = clean_login(request.form.get("login") or "")
        password = request.form.get("password") or ""
        code = request.form.get("code") or None
        if not name or not password:
            return login_page("Enter your login and password.", 400)
        result = logins.login(name, password, code, address())
        if result.session is None:
            account = logins.accounts.get(name)
            who = RequestContext(
                actor=f"user:{name}",
                organization=account.organization if account else None,
                source=address(),
            )
            exchange.record(who, "login", outcome="failure", detail=result.detail)
            if result.outcome is LoginOutcome.THROTTLED:
                response = login_page("Too many failed attempts. Try again later.", 429)
                response.headers["Retry-After"] = str(logins.throttle.window)
                return response
            return login_page("Wrong login, password or one-time code.", 401)
        session = result.session
        exchange.record(context(session), "login", detail="signed in to the web UI")
        response = _see_other("/ui/")
        cookie(response, SESSION_COOKIE, session.token, sessions.ttl)
        response.delete_cookie(CSRF_COOKIE, path="/ui")
        return response

    @bp.post("/logout")
    def logout() -> Response:
        session = current()
        if session is not None:
            if not _same(session.csrf, request.form.get("csrf_token")):
                body = render_template(
                    "error.html", message="The request could not be verified.", status=403
                )
                return make_response(body, 403)
            sessions.close(session.token)
            exchange.record(context(session), "logout", detail="signed out of the web UI")
        response = _see_other("/ui/login")
        response.delete_cookie(SESSION_COOKIE, path="/ui")
        return response

    def home(session: WebSession) -> Response:
        return make_response(render_template("home.html", web=session, query="", by="name"))

    def patients(session: WebSession) -> Response:
        query = (request.args.get("q") or "").strip()[:_MAX_QUERY]
        by = request.args.get("by") or "name"
        if by not in _SEARCH_KEYS:
            by = "name"
        rows: list[dict[str, str]] = []
        total: int | None = None
        if query:
            params = [(_SEARCH_KEYS[by], query), ("_count", str(_PAGE))]
            result = exchange.search(context(session), "Patient", params)
            rows = [patient_row(s) for s in result.entries if s.type == "Patient"]
            total = len(rows)
        body = render_template("home.html", web=session, query=query, by=by, rows=rows, total=total)
        return make_response(body)

    bp.add_url_rule("/", "home", signed_in(home), methods=["GET"])
    bp.add_url_rule("/patients", "patients", signed_in(patients), methods=["GET"])
    return bp
