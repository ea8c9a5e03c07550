"""``/card/v1``: the card service's JSON API (a Flask blueprint; thin over CardService).

Every error is ``application/problem+json`` with a stable ``type`` (card.problems).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
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


def _problem_headers(problem: CardProblem) -> dict[str, str]:
    if problem.kind.status == 401:
        return {"WWW-Authenticate": 'Bearer realm="hie"'}
    return {}


def problem_response(problem: CardProblem) -> Response:
    return Response(
        orjson.dumps(problem.body(request.path)),
        status=problem.kind.status,
        content_type=PROBLEM_JSON,
        headers=_problem_headers(problem),
    )


def _exchange_problem(error: FhirError) -> CardProblem:
    kind = problems.Kind("exchange-" + str(error.status), error.status, "The exchange refused")
    return CardProblem(kind, error.message)


def http_problem(error: HTTPException) -> Response:
    """Werkzeug's own errors (unknown route, wrong method...) under /card as problems."""
    kinds = {404: problems.NOT_FOUND, 405: problems.METHOD_NOT_ALLOWED}
    kind = kinds.get(error.code or 500) or problems.Kind(
        "http-" + str(error.code), error.code or 500, error.name
    )
    return problem_response(CardProblem(kind, error.description or kind.title))


def _parsed(data: bytes) -> Any:
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CardProblem(problems.BAD_REQUEST, f"the body is not JSON: {exc}") from exc


def _body() -> Any:
    return _parsed(request.data)


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
        return problem_response(_exchange_problem(error))

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


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
IDENTIFY_PATH = "/card/v1/identify"


class IdentifyPath:
    """``POST /card/v1/identify`` answered in front of Flask: readers' hottest path skips
    routing and the request object (one comparison, the body read once, the same service
    call and the same problem documents as the blueprint). Anything else, and a body
    without a length or over ``max_body``, falls through to the Flask app."""

    def __init__(
        self,
        app: WsgiApp,
        service: CardService,
        authenticate: Callable[[str | None, str | None], RequestContext],
        *,
        max_body: int,
    ) -> None:
        """``authenticate(authorization header, remote address)`` is the bearer check
        the rest of the API uses."""
        self._app = app
        self._service = service
        self._authenticate = authenticate
        self._max = max_body

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != IDENTIFY_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self._app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length < 0 or length > self._max:
            return self._app(environ, start_response)  # Flask's limits and errors apply
        data = environ["wsgi.input"].read(length) if length else b""
        status, headers, payload = self._answer(environ, data)
        headers["Content-Length"] = str(len(payload))
        start_response(_STATUS.get(status, str(status)), list(headers.items()))
        return [payload]

    def _answer(self, environ: dict[str, Any], data: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            try:
                ctx = self._authenticate(
                    environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR")
                )
            except FhirError as exc:
                raise CardProblem(problems.UNAUTHORIZED, exc.message) from exc
            out = self._service.identify(ctx, _parsed(data))
            return 200, {"Content-Type": "application/json"}, orjson.dumps(out)
        except CardProblem as problem:
            return self._problem(problem)
        except FhirError as error:
            return self._problem(_exchange_problem(error))
        except Exception as error:
            log.exception("card API error", exc_info=error)
            return self._problem(CardProblem(problems.INTERNAL, "the error has been logged"))

    @staticmethod
    def _problem(problem: CardProblem) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": PROBLEM_JSON, **_problem_headers(problem)}
        return problem.kind.status, headers, orjson.dumps(problem.body(IDENTIFY_PATH))


_STATUS: dict[int, str] = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
