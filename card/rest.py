"""``/card/v1``: the card service's JSON API (a Flask blueprint; thin over CardService).

Every error is ``application/problem+json`` with a stable ``type`` (card.problems).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException

from card import problems
from card.problems import CardProblem
from card.service import CardService
from hie.context import RequestContext
from hie.errors import FhirError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status=status, content_type="application/json")


def problem_response(problem: CardProblem) -> Response:
    headers = {}
    if problem.kind.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hie"'
    return Response(
        orjson.dumps(problem.body(request.path)),
        status=problem.kind.status,
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def http_problem(error: HTTPException) -> Response:
    """Werkzeug's own errors (unknown route, wrong method...) under /card as problems."""
    kinds = {404: problems.NOT_FOUND, 405: problems.METHOD_NOT_ALLOWED}
    kind = kinds.get(error.code or 500) or problems.Kind(
        "http-" + str(error.code), error.code or 500, error.name
    )
    return problem_response(CardProblem(kind, error.description or kind.title))


def _body() -> Any:
    if not request.data:
        return None
    try:
        return orjson.loads(request.data)
    except orjson.JSONDecodeError as exc:
        raise CardProblem(problems.BAD_REQUEST, f"the body is not JSON: {exc}") from exc


def create_card_blueprint(
    service: CardService, authenticate: Callable[[], RequestContext]
) -> Blueprint:
    bp = Blueprint("card", __name__)

    def caller() -> RequestContext:
        try:
            return authenticate()
        except FhirError as exc:
            raise CardProblem(problems.UNAUTHORIZED, exc.message) from exc

    @bp.post("/cards")
    def issue() -> Response:
        return _json(service.issue(caller(), _body()), 201)

    @bp.get("/cards/<card_no>")
    def read(card_no: str) -> Response:
        return _json(service.get(caller(), card_no))

    @bp.post("/cards/<card_no>/<any('report-loss', replace, cancel, freeze, unfreeze):action>")
    def change(card_no: str, action: str) -> Response:
        return _json(service.change(caller(), card_no, action, _body()))

    @bp.post("/cards/<card_no>/qr")
    def qr(card_no: str) -> Response:
        return _json(service.issue_qr(caller(), card_no), 201)

    @bp.post("/identify")
    def identify() -> Response:
        return _json(service.identify(caller(), _body()))

    @bp.get("/access-log")
    def access_log() -> Response:
        return _json(service.access_log(caller(), {"qr": request.args.get("qr")}))

    @bp.post("/consents")
    def record_consent() -> Response:
        body = _body()
        out = service.record_consent(caller(), body)
        return _json(out, 200 if isinstance(body, dict) and "withdraw" in body else 201)

    @bp.get("/consents")
    def consents() -> Response:
        return _json(service.list_consents(caller(), request.args.get("qr")))

    @bp.post("/check-in")
    def check_in() -> Response:
        return _json(service.check_in(caller(), _body()), 201)

    @bp.post("/identity/verify")
    def verify() -> Response:
        return _json(service.verify_identity(caller(), _body()))

    @bp.get("/identity/resolve")
    def resolve() -> Response:
        args = request.args
        return _json(service.resolve(caller(), args.get("card_no"), args.get("resident_id")))

    @bp.errorhandler(CardProblem)
    def _problem(error: CardProblem) -> Response:
        return problem_response(error)

    @bp.errorhandler(FhirError)
    def _exchange_error(error: FhirError) -> Response:
        kind = problems.Kind("exchange-" + str(error.status), error.status, "The exchange refused")
        return problem_response(CardProblem(kind, error.message))

    @bp.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        return http_problem(error)

    @bp.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("card API error", exc_info=error)
        return problem_response(CardProblem(problems.INTERNAL, "the error has been logged"))

    return bp


def register(app: Flask, service: CardService, authenticate: Callable[[], RequestContext]) -> None:
    app.register_blueprint(create_card_blueprint(service, authenticate), url_prefix="/card/v1")
