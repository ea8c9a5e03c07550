"""The OAuth2 token endpoint (SMART Backend Services) and the SMART configuration.

``POST /auth/token`` takes ``grant_type=client_credentials`` with a ``private_key_jwt``
client assertion and answers with a short-lived access token, or with an RFC 6749 error
object. Every grant and every refusal is recorded through the exchange's audit seam.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, request

from hie.auth.errors import OAuthError, invalid_request
from hie.auth.grants import TokenRequest
from hie.auth.services import AuthServices
from hie.context import RequestContext
from hie.exchange import Exchange

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM = "application/x-www-form-urlencoded"
_UNKNOWN = "unknown-client"


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    response = Response(orjson.dumps(body), status=status, content_type="application/json")
    response.headers.update(headers or {})
    return response


def oauth_error(error: OAuthError) -> Response:
    headers = dict(_NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hie", error="invalid_client"'
    return _json(error.to_json(), error.status, headers)


def smart_configuration(auth: AuthServices) -> dict[str, Any]:
    """What a SMART client discovers at ``.well-known/smart-configuration``."""
    return {
        "token_endpoint": auth.token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "system/*.cruds",
            "system/*.rs",
            "system/Patient.rs",
            "user/*.rs",
        ],
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        "code_challenge_methods_supported": [],
    }


def create_oauth_blueprint(auth: AuthServices, exchange: Exchange) -> Blueprint:
    """Routes at the root: ``/auth/token`` and both ``.well-known`` locations."""
    bp = Blueprint("oauth", __name__)
    configuration = orjson.dumps(smart_configuration(auth))

    @bp.get("/.well-known/smart-configuration")
    @bp.get("/fhir/.well-known/smart-configuration")
    def well_known() -> Response:
        return Response(configuration, content_type="application/json")

    @bp.post("/auth/token")
    def token() -> Response:
        form = TokenRequest({})
        try:
            media = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if media != _FORM:
                raise invalid_request(f"the token request must be {_FORM}")
            form = TokenRequest({name: request.form.getlist(name) for name in request.form})
            issued = auth.grants.token(form)
        except OAuthError as error:
            who = RequestContext(actor=form.claimed_client or _UNKNOWN, source=request.remote_addr)
            exchange.record(who, "token", outcome="failure", detail=error.description)
            return oauth_error(error)
        who = RequestContext(
            actor=issued.client.name,
            organization=issued.client.organization,
            source=request.remote_addr,
        )
        exchange.record(who, "token", detail=f"granted {issued.scope}")
        return _json(issued.to_json(), headers=_NO_STORE)

    return bp
