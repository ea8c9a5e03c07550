"""Instance read and vread, answered in front of Flask.

Reads are the hottest path of the exchange, so they skip routing and the request
object: one regular expression, the cached token check, one exchange call, and the
stored bytes go straight out. Everything else falls through to the Flask app.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from hie.auth.tokens import TokenVerifier
from hie.errors import FhirError, MethodNotAllowed, Unauthorized
from hie.exchange import Exchange
from hie.rest import http
from hie.rest.auth import bearer_context

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_READ = re.compile(r"^/fhir/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([^/]+))?$")


class ReadPath:
    def __init__(self, app: WsgiApp, exchange: Exchange, verifier: TokenVerifier) -> None:
        self._app = app
        self._exchange = exchange
        self._verifier = verifier
        self._base = exchange.base_url

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        match = _READ.match(environ.get("PATH_INFO", ""))
        if match:
            if method in ("GET", "HEAD"):
                return self._read(environ, start_response, method, *match.groups())
            if match.group(3) is not None:  # a version is read-only
                error = MethodNotAllowed(f"{method} is not allowed on a resource version")
                return http.error_response(error)(environ, start_response)
        return self._app(environ, start_response)

    def _read(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        method: str,
        rtype: str,
        rid: str,
        version: str | None,
    ) -> Iterable[bytes]:
        try:
            query = environ.get("QUERY_STRING")
            fmt = parse_qs(query).get("_format", [None])[0] if query else None
            http.check_format(fmt, environ.get("HTTP_ACCEPT"))
            ctx = bearer_context(
                self._verifier, environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR")
            )
            if version is None:
                stored = self._exchange.read(ctx, rtype, rid)
            else:
                stored = self._exchange.vread(ctx, rtype, rid, version)
        except Unauthorized as error:
            try:
                self._exchange.record_refusal(environ.get("REMOTE_ADDR"), error.message)
            except FhirError as unaudited:
                return http.error_response(unaudited)(environ, start_response)
            return http.error_response(error)(environ, start_response)
        except FhirError as error:
            return http.error_response(error)(environ, start_response)
        except Exception as exc:
            return http.internal_error_response(exc)(environ, start_response)
        headers = http.version_headers(stored, self._base)
        headers["Content-Type"] = http.FHIR_JSON
        headers["Content-Length"] = str(len(stored.content))
        start_response("200 OK", list(headers.items()))
        return [] if method == "HEAD" else [stored.content]
