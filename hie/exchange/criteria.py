"""Search parameters as the core understands them: ``_id`` and ``identifier`` on every type.

Search requests and conditional operations (If-None-Exist, conditional update and
delete, conditional references) share this parser, so widening search widens them too.
A conditional operation never ignores a criterion it does not understand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hie.errors import InvalidSearch, Issue
from hie.storage.ports import Criterion, IdCriterion, TokenCriterion

# Parameters that shape the response rather than select resources.
_IGNORED = {"_format", "_pretty"}
_CONTROL = {"_count", "_cursor", "_total", "_summary"}


@dataclass
class ParsedSearch:
    criteria: list[Criterion] = field(default_factory=list)
    count: int = 50
    cursor: int | None = None
    total: str = "accurate"
    summary_count: bool = False
    warnings: list[Issue] = field(default_factory=list)
    echo: list[tuple[str, str]] = field(default_factory=list)


def split_escaped(value: str, sep: str) -> list[str]:
    """Split on ``sep`` honouring the FHIR search escape ``\\``."""
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_token(name: str, value: str) -> tuple[str | None, str | None]:
    if value == "":
        raise InvalidSearch(f"parameter '{name}' has an empty value")
    pieces = split_escaped(value, "|")
    if len(pieces) == 1:
        return None, pieces[0]
    if len(pieces) != 2:
        raise InvalidSearch(f"parameter '{name}': '{value}' is not a token (system|code)")
    system, code = pieces
    if system == "" and code == "":
        raise InvalidSearch(f"parameter '{name}': '{value}' names neither a system nor a code")
    return system, (code or None)


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise InvalidSearch(f"parameter '{name}' must be a whole number, not '{value}'") from exc
    if not low <= number <= high:
        raise InvalidSearch(f"parameter '{name}' must be between {low} and {high}")
    return number


def parse_search(
    resource_type: str,
    params: Sequence[tuple[str, str]],
    *,
    strict: bool = False,
    condition: bool = False,
    default_count: int = 50,
    max_count: int = 1000,
) -> ParsedSearch:
    """Turn (name, value) pairs into store criteria and response controls."""
    out = ParsedSearch(count=default_count)
    for name, value in params:
        base, _, modifier = name.partition(":")
        if base in _IGNORED:
            continue
        if condition and base in _CONTROL:
            raise InvalidSearch(f"parameter '{name}' has no meaning in a conditional operation")
        if base == "_id" and not modifier:
            ids = tuple(v for v in split_escaped(value, ",") if v)
            if not ids:
                raise InvalidSearch("parameter '_id' has an empty value")
            out.criteria.append(IdCriterion(ids))
        elif base == "identifier" and not modifier:
            alternatives = tuple(parse_token(name, v) for v in split_escaped(value, ","))
            out.criteria.append(TokenCriterion("identifier", alternatives))
        elif base == "_source" and not modifier:
            sources = tuple((None, v) for v in split_escaped(value, ",") if v)
            if not sources:
                raise InvalidSearch("parameter '_source' has an empty value")
            out.criteria.append(TokenCriterion("_source", sources))
        elif base == "_count" and not modifier:
            out.count = min(_int(name, value, 0, 1_000_000), max_count)
            out.echo.append((name, value))
            continue
        elif base == "_cursor":
            out.cursor = _int(name, value, 0, 2**62)
            continue
        elif base == "_total" and not modifier:
            if value not in ("none", "estimate", "accurate"):
                raise InvalidSearch(
                    f"parameter '_total' must be none, estimate or accurate, not '{value}'"
                )
            out.total = value
        elif base == "_summary" and not modifier and value == "count":
            out.summary_count = True
        else:
            message = f"parameter '{name}' is not supported on {resource_type} and was ignored"
            if strict or condition:
                raise InvalidSearch(message.replace(" and was ignored", ""))
            out.warnings.append(Issue("warning", "not-supported", message))
            continue
        out.echo.append((name, value))
    if condition and not out.criteria:
        raise InvalidSearch("a conditional operation needs at least one search criterion")
    return out


def supported_parameters(resource_type: str) -> list[dict[str, str]]:
    return [
        {
            "name": "_id",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
            "type": "token",
        },
        {
            "name": "_source",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-source",
            "type": "uri",
        },
        {
            "name": "identifier",
            "definition": f"http://hl7.org/fhir/SearchParameter/{resource_type}-identifier",
            "type": "token",
        },
    ]
