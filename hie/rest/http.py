"""HTTP details of the FHIR REST API: media types, Prefer, ETags, bodies and errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Request, Response
from werkzeug.exceptions import HTTPException

from hie.errors import (
    BadRequest,
    FhirError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    operation_outcome,
)
from hie.exchange import StoredResource as StoredView
from hie.fhir.canonical import http_date, instant, loads

FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_PATCH = "application/json-patch+json"
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
_FORMAT_ALIASES = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_ACCEPTS = _JSON_TYPES | {"*/*", "application/*"}
# An escaped NUL (\u0000) not itself escaped: FHIR strings exclude it, PostgreSQL text cannot
# hold it, and JSON has no other way to carry one.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

log = logging.getLogger("hie.rest")


def fhir_response(
    body: bytes | dict[str, Any] | None, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    data = body if isinstance(body, bytes) else b"" if body is None else orjson.dumps(body)
    response = Response(data, status=status, headers=dict(headers or {}))
    if body is not None:
        response.headers["Content-Type"] = FHIR_JSON
    return response


def error_response(error: FhirError) -> Response:
    return fhir_response(error.outcome(), error.status, error.headers)


def http_error_response(error: HTTPException) -> Response:
    """Werkzeug's own errors (unknown route, wrong method, too large) as OperationOutcomes."""
    code = error.code or 500
    mapped: FhirError
    if code == 404:
        mapped = NotFound("no FHIR endpoint at this URL")
    elif code == 405:
        mapped = MethodNotAllowed("this URL does not accept that HTTP method")
    elif code == 413:
        mapped = PayloadTooLarge("the request body is larger than the server accepts")
    elif code == 415:
        mapped = UnsupportedMediaType(error.description or "unsupported media type")
    else:
        mapped = BadRequest(error.description or error.name)
        response = fhir_response(mapped.outcome(), code)
        return response
    return error_response(mapped)


def internal_error_response(exc: BaseException) -> Response:
    log.exception("unhandled error", exc_info=exc)
    outcome = operation_outcome(
        [FhirError("the server failed to process the request; it has been logged").all_issues()[0]]
    )
    return fhir_response(outcome, 500)


def _media(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def check_format(fmt: str | None, accept: str | None) -> None:
    """Only JSON is served: ``_format`` and Accept must allow it (406 otherwise)."""
    if fmt is not None and fmt.strip().lower().replace(" ", "+") not in _FORMAT_ALIASES:
        raise NotAcceptable(f"_format '{fmt}' is not supported; this server speaks FHIR JSON")
    if fmt is None and accept:
        offered = {_media(part) for part in accept.split(",")}
        if not offered & _ACCEPTS:
            raise NotAcceptable(f"cannot produce any of '{accept}'; this server speaks FHIR JSON")


def json_body(request: Request, max_bytes: int, *, patch: bool = False) -> Any:
    """The parsed request body, after media-type and size checks."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the request body exceeds the limit of {max_bytes} bytes")
    media = _media(request.headers.get("Content-Type"))
    allowed = {JSON_PATCH} if patch else _JSON_TYPES
    if media not in allowed:
        wanted = JSON_PATCH if patch else "application/fhir+json"
        raise UnsupportedMediaType(
            f"Content-Type '{media or 'none'}' is not supported here; send {wanted}"
        )
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the request body exceeds the limit of {max_bytes} bytes")
    if not data.strip():
        raise BadRequest("the request body is empty")
    if b"\\u0000" in data and _ESCAPED_NUL.search(data):
        raise BadRequest("FHIR strings cannot contain the NUL character (\\u0000)")
    return loads(data)


def prefer(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in request.headers.get("Prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = value.strip().strip('"').lower()
    return out


def if_match(request: Request) -> int | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    match = re.fullmatch(r'\s*(?:W/)?"(\d+)"\s*', value)
    if not match:
        raise BadRequest(f"If-Match '{value}' is not a version ETag such as W/\"3\"")
    return int(match.group(1))


def version_headers(stored: StoredView, base_url: str) -> dict[str, str]:
    """ETag, Last-Modified and Content-Location of a stored version."""
    return {
        "ETag": f'W/"{stored.version}"',
        "Last-Modified": http_date(stored.last_updated),
        "Content-Location": f"{base_url}/{stored.type}/{stored.id}/_history/{stored.version}",
    }


def written_response(
    stored: StoredView, status: int, request: Request, base_url: str, *, location: bool
) -> Response:
    headers = version_headers(stored, base_url)
    if location:
        headers["Location"] = headers["Content-Location"]
    wanted = prefer(request).get("return", "representation")
    if wanted == "minimal":
        return fhir_response(None, status, headers)
    if wanted == "operationoutcome":
        verb = "created" if status == 201 else "updated"
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"{stored.type}/{stored.id} {verb} at version {stored.version} "
                    f"({instant(stored.last_updated)})",
                }
            ],
        }
        return fhir_response(outcome, status, headers)
    return fhir_response(stored.content, status, headers)
