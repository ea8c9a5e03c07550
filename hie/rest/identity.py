"""FHIR operations of the master patient index.

* ``GET  /fhir/Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=...]`` (IHE PIXm)
* ``POST /fhir/Patient/$match`` (IHE PDQm ITI-119: ``resource``, ``onlyCertainMatches``, ``count``)
* ``POST /fhir/Patient/$link``    ``source-patient`` (a source Patient) -> ``target-patient``
  (an enterprise Patient); ``$unlink`` ``source-patient`` gets an enterprise of its own;
  ``$merge`` ``source-patient`` (enterprise) into ``target-patient`` (enterprise);
  ``$unmerge`` ``source-patient`` (a merged-away enterprise Patient) comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from hie.context import RequestContext
from hie.errors import BadRequest, NotFound
from hie.exchange import Exchange
from hie.exchange.identity_api import IdentityOperations
from hie.rest import http

Authenticate = Callable[[], RequestContext]


def _parameters(body: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("the operation takes a Parameters resource")
    out: dict[str, dict[str, Any]] = {}
    for param in body.get("parameter") or []:
        if isinstance(param, dict) and isinstance(param.get("name"), str):
            out.setdefault(param["name"], param)
    return out


def _reference(params: dict[str, dict[str, Any]], name: str) -> str:
    param = params.get(name)
    if param is None:
        raise BadRequest(f"parameter '{name}' is missing")
    ref = param.get("valueReference", {}).get("reference") or param.get("valueString")
    if not isinstance(ref, str) or not ref:
        raise BadRequest(f"parameter '{name}' needs a valueReference to a Patient")
    return ref


def _result(ref: str) -> Response:
    return http.fhir_response(
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "result", "valueReference": {"reference": ref}}],
        }
    )


def add_identity_routes(
    bp: Blueprint, exchange: Exchange, authenticate: Authenticate, *, max_body: int
) -> None:
    def ops() -> IdentityOperations:
        if exchange.identity is None:
            raise NotFound("the master patient index is not enabled")
        return exchange.identity

    @bp.get("/Patient/$ihe-pix")
    def ihe_pix() -> Response:
        ctx = authenticate()
        sources = request.args.getlist("sourceIdentifier")
        if len(sources) != 1:
            raise BadRequest("$ihe-pix needs exactly one sourceIdentifier=system|value")
        targets = [t for v in request.args.getlist("targetSystem") for t in v.split(",") if t]
        return http.fhir_response(ops().pix(ctx, sources[0], targets))

    @bp.post("/Patient/$match")
    def match() -> Response:
        ctx = authenticate()
        params = _parameters(http.json_body(request, max_body))
        resource = params.get("resource", {}).get("resource")
        only = params.get("onlyCertainMatches", {}).get("valueBoolean", False)
        count = params.get("count", {}).get("valueInteger")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise BadRequest("count must be a positive integer")
        bundle = ops().match(ctx, resource, count=count, only_certain=bool(only))
        return http.fhir_response(bundle)

    @bp.post("/Patient/$link")
    def link() -> Response:
        ctx = authenticate()
        params = _parameters(http.json_body(request, max_body))
        src, target = _reference(params, "source-patient"), _reference(params, "target-patient")
        return _result(ops().link(ctx, src, target))

    @bp.post("/Patient/$unlink")
    def unlink() -> Response:
        ctx = authenticate()
        params = _parameters(http.json_body(request, max_body))
        return _result(ops().unlink(ctx, _reference(params, "source-patient")))

    @bp.post("/Patient/$merge")
    def merge() -> Response:
        ctx = authenticate()
        params = _parameters(http.json_body(request, max_body))
        src, target = _reference(params, "source-patient"), _reference(params, "target-patient")
        return _result(ops().merge(ctx, src, target))

    @bp.post("/Patient/$unmerge")
    def unmerge() -> Response:
        ctx = authenticate()
        params = _parameters(http.json_body(request, max_body))
        return _result(ops().unmerge(ctx, _reference(params, "source-patient")))
