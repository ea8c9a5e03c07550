"""``POST /fhir/Consent/$evaluate``: the consent decision API for the city's platforms.

In: a Parameters resource with ``patient`` (valueReference) or ``identifier``
(valueIdentifier, e.g. the resident's card number), ``actor`` (valueReference to an
Organization), ``purpose`` (valueCoding or valueCode, v3-ActReason), ``class``
(valueCode: a resource type) and, about the data, optional ``securityLabel``
(valueCoding, repeating), ``date`` (valueDate, valueDateTime or valuePeriod: its
clinical date, for ``dataPeriod`` provisions) and ``custodian`` (valueReference to the
Organization that holds it, for provisions whose actor is the data's source); or
``resource`` (valueReference ``Type/id``), a stored record of the patient judged as a read
of it would be (``class`` may then be left out).
Out: a Parameters resource with ``decision`` (permit | deny) and ``rule``. It reveals no
clinical data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from hie.context import RequestContext
from hie.errors import BadRequest
from hie.exchange import Exchange
from hie.rest import http


def _value(param: dict[str, Any], *kinds: str) -> Any:
    for kind in kinds:
        if f"value{kind}" in param:
            return param[f"value{kind}"]
    raise BadRequest(f"parameter '{param.get('name')}' needs a value{kinds[0]}")


def _date_range(param: dict[str, Any]) -> tuple[str, str]:
    """A ``date`` parameter as the (start, end) FHIR dates it spans."""
    value = _value(param, "DateTime", "Date", "Period")
    if isinstance(value, dict):
        start, end = value.get("start"), value.get("end")
        if not isinstance(start, str) or not isinstance(end, str):
            raise BadRequest("parameter 'date': a valuePeriod needs both start and end")
        return start, end
    if not isinstance(value, str):
        raise BadRequest("parameter 'date' is not a date")
    return value, value


def register_evaluate(
    bp: Blueprint, exchange: Exchange, authenticate: Callable[[], RequestContext], max_body: int
) -> None:
    @bp.post("/Consent/$evaluate")
    def evaluate_consent() -> Response:
        ctx = authenticate()
        body = http.json_body(request, max_body)
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise BadRequest("Consent/$evaluate takes a Parameters resource")
        args: dict[str, Any] = {"labels": []}
        for p in body.get("parameter") or []:
            if not isinstance(p, dict):
                continue
            name = p.get("name")
            if name == "patient":
                ref = str(_value(p, "Reference").get("reference", ""))
                args["patient"] = ref.removeprefix("Patient/")
            elif name == "identifier":
                ident = _value(p, "Identifier")
                args["identifier"] = (str(ident.get("system", "")), str(ident.get("value", "")))
            elif name == "actor":
                args["organization"] = str(_value(p, "Reference").get("reference", ""))
            elif name == "purpose":
                value = _value(p, "Coding", "Code")
                args["purpose"] = value.get("code") if isinstance(value, dict) else str(value)
            elif name == "class":
                args["data_class"] = str(_value(p, "Code", "String"))
            elif name == "securityLabel":
                coding = _value(p, "Coding")
                args["labels"].append((str(coding.get("system")), str(coding.get("code"))))
            elif name == "date":
                args.setdefault("dates", []).append(_date_range(p))
            elif name == "custodian":
                args["custodian"] = str(_value(p, "Reference").get("reference", ""))
            elif name == "resource":
                ref = str(_value(p, "Reference").get("reference", ""))
                rtype, _, rid = ref.partition("/")
                if not rtype or not rid or "/" in rid:
                    raise BadRequest(f"parameter 'resource' needs a Type/id reference: {ref!r}")
                args["resource"] = (rtype, rid)
                args.setdefault("data_class", rtype)
        missing = [n for n in ("organization", "data_class") if n not in args]
        if missing or ("patient" not in args and "identifier" not in args):
            raise BadRequest("Consent/$evaluate needs patient or identifier, actor and class")
        args.setdefault("purpose", None)
        decision = exchange.evaluate_consent(ctx, **args)
        out = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "decision", "valueCode": "permit" if decision.permit else "deny"},
                {"name": "rule", "valueString": decision.rule},
            ],
        }
        return http.fhir_response(out)
