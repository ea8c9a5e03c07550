"""Errors are FHIR errors from the start.

Every failure the exchange reports is a :class:`FhirError`. Each subclass fixes one
HTTP status and one OperationOutcome issue code, so the table below is the single
place that maps error categories to the wire::

    FhirError                      500  exception
    ├── BadRequest                 400  invalid
    │   ├── InvalidResource        400  structure/value/required/code-invalid (per issue)
    │   ├── InvalidSearch          400  invalid (names the parameter)
    │   └── MultipleMatches        412  multiple-matches
    ├── Unauthorized               401  login
    ├── Forbidden                  403  forbidden
    ├── NotFound                   404  not-found
    ├── MethodNotAllowed           405  not-supported
    ├── NotAcceptable              406  not-supported
    ├── Conflict                   409  conflict
    ├── Gone                       410  deleted
    ├── PreconditionFailed         412  conflict (stale If-Match, unresolved condition)
    ├── PayloadTooLarge            413  too-long
    ├── UnsupportedMediaType       415  not-supported
    ├── Unprocessable              422  processing (business rules)
    ├── NotSupported               501  not-supported
    └── Unavailable                503  transient
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue."""

    severity: str
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(message: str) -> dict[str, Any]:
    return operation_outcome([Issue("information", "informational", message)])


@dataclass(eq=False)
class FhirError(Exception):
    """Base of every error the exchange reports; renders as an OperationOutcome."""

    message: str
    issues: Sequence[Issue] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @classmethod
    def at(cls, message: str, *expression: str, code: str | None = None) -> FhirError:
        """An error whose single issue points at element paths (FHIRPath expressions)."""
        return cls(message, issues=[Issue("error", code or cls.code, message, expression)])

    def all_issues(self) -> list[Issue]:
        return list(self.issues) or [Issue("error", self.code, self.message)]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.all_issues())

    def __str__(self) -> str:
        return self.message


class BadRequest(FhirError):
    status = 400
    code = "invalid"


class InvalidResource(BadRequest):
    """The resource failed base FHIR R4 validation; issues name the element paths."""


class InvalidSearch(BadRequest):
    """A search parameter or value cannot be understood."""


class MultipleMatches(BadRequest):
    status = 412
    code = "multiple-matches"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-long"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    status = 422
    code = "processing"


class NotSupported(FhirError):
    status = 501
    code = "not-supported"


class Unavailable(FhirError):
    status = 503
    code = "transient"


def at_path(error: FhirError, prefix: str) -> list[Issue]:
    """The error's issues with every expression re-rooted under ``prefix`` (a Bundle entry)."""
    out = []
    for issue in error.all_issues():
        if issue.expression:
            expr = tuple(_reroot(prefix, e) for e in issue.expression)
        else:
            expr = (prefix,)
        out.append(Issue(issue.severity, issue.code, issue.diagnostics, expr))
    return out


def _reroot(prefix: str, expression: str) -> str:
    # "Patient.name[0]" under "Bundle.entry[3].resource" -> "Bundle.entry[3].resource.name[0]"
    head, dot, rest = expression.partition(".")
    if head[:1].isupper() and "[" not in head:
        return f"{prefix}.{rest}" if dot else prefix
    return f"{prefix}.{expression}"
