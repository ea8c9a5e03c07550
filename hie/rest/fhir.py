"""FHIR R4 REST views: parse the request, call the exchange, render the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, request

from hie.context import RequestContext
from hie.errors import (
    BadRequest,
    FhirError,
    Issue,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    operation_outcome,
)
from hie.exchange import Exchange
from hie.rest import http
from hie.rest.capability import capability_statement
from hie.rest.consent import register_evaluate
from hie.rest.identity import add_identity_routes

Authenticate = Callable[[], RequestContext]


def _params() -> list[tuple[str, str]]:
    return list(request.args.items(multi=True))


def _form_params() -> list[tuple[str, str]]:
    """Search parameters in a form-encoded body (POST _search, POST $everything)."""
    media = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("a search by POST takes application/x-www-form-urlencoded")
    return parse_qsl(request.get_data(as_text=True), keep_blank_values=True)


def create_fhir_blueprint(
    exchange: Exchange,
    authenticate: Authenticate,
    *,
    max_body: int,
    software_version: str,
    token_url: str | None = None,
) -> Blueprint:
    bp = Blueprint("fhir", __name__)
    base = exchange.base_url
    capability = http.fhir_response(capability_statement(exchange, software_version, token_url))

    @bp.before_request
    def _negotiate() -> None:
        http.check_format(request.args.get("_format"), request.headers.get("Accept"))

    @bp.errorhandler(FhirError)
    def _fhir_error(error: FhirError) -> Response:
        if isinstance(error, Unauthorized):  # a failed attempt is audited too
            try:
                exchange.record_refusal(request.remote_addr, error.message)
            except FhirError as unaudited:
                return http.error_response(unaudited)
        return http.error_response(error)

    @bp.get("/metadata")
    def metadata() -> Response:
        return capability

    register_evaluate(bp, exchange, authenticate, max_body)
    add_identity_routes(bp, exchange, authenticate, max_body=max_body)

    # -- whole system --------------------------------------------------------------

    @bp.post("")
    @bp.post("/")
    def system_bundle() -> Response:
        ctx = authenticate()
        bundle = http.json_body(request, max_body)
        wanted = http.prefer(request).get("return", "minimal")
        return http.fhir_response(exchange.process_bundle(ctx, bundle, prefer=wanted))

    @bp.get("/_history")
    def system_history() -> Response:
        ctx = authenticate()
        result = exchange.history(ctx, None, None, _params())
        return http.fhir_response(exchange.render_history(result, "_history"))

    # -- types ---------------------------------------------------------------------

    @bp.get("/<rtype>")
    def search(rtype: str) -> Response:
        ctx = authenticate()
        strict = http.prefer(request).get("handling") == "strict"
        result = exchange.search(ctx, rtype, _params(), strict=strict)
        return http.fhir_response(exchange.render_search(result))

    @bp.post("/<rtype>/_search")
    def search_post(rtype: str) -> Response:
        ctx = authenticate()
        params = _params() + _form_params()
        strict = http.prefer(request).get("handling") == "strict"
        result = exchange.search(ctx, rtype, params, strict=strict)
        return http.fhir_response(exchange.render_search(result))

    @bp.post("/<rtype>")
    def create(rtype: str) -> Response:
        ctx = authenticate()
        body = http.json_body(request, max_body)
        condition = request.headers.get("If-None-Exist")
        params = parse_qsl(condition.lstrip("?"), keep_blank_values=True) if condition else None
        result = exchange.create(ctx, rtype, body, if_none_exist=params)
        return http.written_response(result.stored, result.status, request, base, location=True)

    @bp.put("/<rtype>")
    def conditional_update(rtype: str) -> Response:
        ctx = authenticate()
        params = [p for p in _params() if p[0] != "_format"]
        if not params:
            raise BadRequest("PUT to a type needs search criteria (conditional update) or an id")
        body = http.json_body(request, max_body)
        result = exchange.conditional_update(
            ctx, rtype, params, body, if_match=http.if_match(request)
        )
        return http.written_response(
            result.stored, result.status, request, base, location=result.created
        )

    @bp.patch("/<rtype>")
    def conditional_patch(rtype: str) -> Response:
        ctx = authenticate()
        params = [p for p in _params() if p[0] != "_format"]
        if not params:
            raise BadRequest("PATCH to a type needs search criteria (conditional patch)")
        operations = http.json_body(request, max_body, patch=True)
        result = exchange.conditional_patch(
            ctx, rtype, params, operations, if_match=http.if_match(request)
        )
        return http.written_response(result.stored, 200, request, base, location=False)

    @bp.delete("/<rtype>")
    def conditional_delete(rtype: str) -> Response:
        ctx = authenticate()
        params = [p for p in _params() if p[0] != "_format"]
        if not params:
            raise BadRequest("DELETE on a type needs search criteria (conditional delete)")
        result = exchange.conditional_delete(ctx, rtype, params)
        if result is None:
            outcome = operation_outcome(
                [Issue("information", "not-found", f"no {rtype} matched; nothing was deleted")]
            )
            return http.fhir_response(outcome, 200)
        return http.fhir_response(None, 204, {"ETag": f'W/"{result.stored.version}"'})

    @bp.get("/<rtype>/_history")
    def type_history(rtype: str) -> Response:
        ctx = authenticate()
        result = exchange.history(ctx, rtype, None, _params())
        return http.fhir_response(exchange.render_history(result, f"{rtype}/_history"))

    @bp.post("/<rtype>/$validate")
    def validate_type(rtype: str) -> Response:
        return _validate(rtype, None)

    @bp.route("/<rtype>/<rid>/$validate", methods=["GET", "POST"])
    def validate_instance(rtype: str, rid: str) -> Response:
        return _validate(rtype, rid)

    def _validate(rtype: str, rid: str | None) -> Response:
        ctx = authenticate()
        mode = request.args.get("mode")
        resource: Any = None
        if request.method == "POST":
            body = http.json_body(request, max_body)
            resource, mode = _validate_input(body, mode)
        if mode not in (None, "create", "update", "delete"):
            raise BadRequest(f"$validate mode '{mode}' is not one of create, update, delete")
        issues = exchange.validate(ctx, rtype, resource, mode=mode, id_=rid)
        if not issues:
            issues = [Issue("information", "informational", "the resource is valid")]
        failed = any(i.severity in ("error", "fatal") for i in issues)
        return http.fhir_response(operation_outcome(issues), 400 if failed else 200)

    # -- instances -------------------------------------------------------------------

    @bp.put("/<rtype>/<rid>")
    def update(rtype: str, rid: str) -> Response:
        ctx = authenticate()
        body = http.json_body(request, max_body)
        result = exchange.update(ctx, rtype, rid, body, if_match=http.if_match(request))
        return http.written_response(
            result.stored, result.status, request, base, location=result.created
        )

    @bp.patch("/<rtype>/<rid>")
    def patch(rtype: str, rid: str) -> Response:
        ctx = authenticate()
        operations = http.json_body(request, max_body, patch=True)
        result = exchange.patch(ctx, rtype, rid, operations, if_match=http.if_match(request))
        return http.written_response(result.stored, 200, request, base, location=False)

    @bp.delete("/<rtype>/<rid>")
    def delete(rtype: str, rid: str) -> Response:
        ctx = authenticate()
        result = exchange.delete(ctx, rtype, rid)
        return http.fhir_response(None, 204, {"ETag": f'W/"{result.stored.version}"'})

    @bp.route("/Patient/<rid>/$everything", methods=["GET", "POST"])
    def everything(rid: str) -> Response:
        ctx = authenticate()
        strict = http.prefer(request).get("handling") == "strict"
        params = _params()
        if request.method == "POST":
            params += _form_params()
        result = exchange.everything(ctx, rid, params, strict=strict)
        return http.fhir_response(exchange.render_search(result))

    @bp.get("/<ctype>/<cid>/<rtype>")
    def compartment_search(ctype: str, cid: str, rtype: str) -> Response:
        ctx = authenticate()
        if ctype != "Patient":
            exchange.check_type(ctype)
            raise NotFound(f"searching the {ctype} compartment is not supported; only Patient")
        strict = http.prefer(request).get("handling") == "strict"
        result = exchange.compartment_search(ctx, cid, rtype, _params(), strict=strict)
        return http.fhir_response(exchange.render_search(result))

    @bp.get("/<rtype>/<rid>/_history")
    def instance_history(rtype: str, rid: str) -> Response:
        ctx = authenticate()
        result = exchange.history(ctx, rtype, rid, _params())
        return http.fhir_response(exchange.render_history(result, f"{rtype}/{rid}/_history"))

    return bp


def _validate_input(body: Any, mode: str | None) -> tuple[Any, str | None]:
    """$validate takes the resource itself or a Parameters with ``resource`` and ``mode``."""
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        for param in body.get("parameter") or []:
            if not isinstance(param, dict):
                continue
            if param.get("name") == "resource":
                resource = param.get("resource")
            elif param.get("name") == "mode":
                mode = param.get("valueCode") or param.get("valueString") or mode
        if resource is None and mode != "delete":
            raise BadRequest("$validate Parameters need a 'resource' parameter")
        return resource, mode
    return body, mode
