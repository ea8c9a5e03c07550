"""Independent expectations: what the R4 search page says each search should return.

These helpers read the loaded JSON directly, with explicit element paths and the
standard library, and share no code with the server's extraction, dates or planner.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

Resource = dict[str, Any]
LOCAL_TZ = timezone(timedelta(hours=8))  # the server's default offset (Mianyang)
MIN = datetime(1, 1, 1, tzinfo=UTC)
MAX = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@dataclass
class Corpus:
    """Every loaded resource, by type, exactly as sent."""

    by_type: dict[str, list[Resource]] = field(default_factory=dict)

    def add(self, resource: Resource) -> None:
        self.by_type.setdefault(resource["resourceType"], []).append(resource)

    def of(self, rtype: str) -> list[Resource]:
        return self.by_type.get(rtype, [])

    def get(self, rtype: str, rid: str) -> Resource | None:
        for r in self.of(rtype):
            if r["id"] == rid:
                return r
        return None

    def ids(self, rtype: str, where: Callable[[Resource], bool] = lambda r: True) -> set[str]:
        return {r["id"] for r in self.of(rtype) if where(r)}

    def all(self) -> Iterator[Resource]:
        for items in self.by_type.values():
            yield from items


# -- walking JSON ---------------------------------------------------------------------


def values(node: Any, *path: str) -> list[Any]:
    """Every value at ``path`` (lists flattened at each step)."""
    current = [node]
    for key in path:
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and key in item:
                v = item[key]
                nxt.extend(v if isinstance(v, list) else [v])
        current = nxt
    return current


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def references(node: Any) -> list[str]:
    """Every ``Reference.reference`` string anywhere in ``node``."""
    return [
        n["reference"]
        for n in walk(node)
        if isinstance(n, dict) and isinstance(n.get("reference"), str)
    ]


def local(ref: str, base: str = "https://hie.example.cn/fhir/") -> str:
    return ref[len(base) :] if ref.startswith(base) else ref


def refers_to(resource: Resource, target: str, *path: str) -> bool:
    return any(local(r.get("reference", "")) == target for r in values(resource, *path))


# -- strings --------------------------------------------------------------------------


def norm(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def name_parts(name: dict[str, Any]) -> list[str]:
    parts = [name.get("text"), name.get("family"), *name.get("given", [])]
    parts += [*name.get("prefix", []), *name.get("suffix", [])]
    return [p for p in parts if isinstance(p, str)]


def person_names(r: Resource) -> list[str]:
    """Every searchable form of a resource's HumanNames, the whole name as people write it
    included: family then given without a space for Chinese, "given family" otherwise."""
    out = []
    for n in r.get("name", []):
        out += name_parts(n)
        family, given = n.get("family"), n.get("given", [])
        if family and given and "text" not in n:
            chinese = "\u4e00" <= family[0] <= "\u9fff"
            out.append(family + "".join(given) if chinese else " ".join([*given, family]))
    return out


def starts(texts: Iterable[str], query: str) -> bool:
    return any(norm(t).startswith(norm(query)) for t in texts)


# -- tokens ---------------------------------------------------------------------------


def codings(resource: Resource, *path: str) -> list[tuple[str | None, str]]:
    """(system, code) of every Coding under a CodeableConcept (or Coding) path."""
    out = []
    for node in values(resource, *path):
        for coding in node.get("coding", [node]) if isinstance(node, dict) else []:
            if isinstance(coding, dict) and "code" in coding:
                out.append((coding.get("system"), coding["code"]))
    return out


def has_code(
    resource: Resource, code: str | None, *path: str, system: str | bool | None = False
) -> bool:
    """``system`` False: any system; None: no system; a string: that system."""
    for s, c in codings(resource, *path):
        if code is not None and c != code:
            continue
        if system is False or s == system:
            return True
    return False


def identifiers(resource: Resource, path: str = "identifier") -> list[tuple[str | None, str]]:
    return [(i.get("system"), i["value"]) for i in values(resource, path) if "value" in i]


# -- dates ----------------------------------------------------------------------------

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The instants a FHIR date covers (both ends inclusive, to the microsecond)."""
    m = _DATE.fullmatch(text)
    assert m, text
    y, mo, d, h, mi, s, frac, tz = m.groups()
    if tz is None:
        zone: timezone = LOCAL_TZ
    elif tz == "Z":
        zone = UTC
    else:
        sign = -1 if tz[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    year = int(y)
    if mo is None:
        start = datetime(year, 1, 1, tzinfo=zone)
        end = datetime(year + 1, 1, 1, tzinfo=zone)
    elif d is None:
        month = int(mo)
        start = datetime(year, month, 1, tzinfo=zone)
        end = start + timedelta(days=calendar.monthrange(year, month)[1])
    elif h is None:
        start = datetime(year, int(mo), int(d), tzinfo=zone)
        end = start + timedelta(days=1)
    else:
        start = datetime(year, int(mo), int(d), int(h), int(mi), int(s or 0), tzinfo=zone)
        if frac:
            start += timedelta(microseconds=int(frac[:6].ljust(6, "0")))
            end = start + timedelta(microseconds=10 ** (6 - len(frac[:6])))
        elif s:
            end = start + timedelta(seconds=1)
        else:
            end = start + timedelta(minutes=1)
    return start.astimezone(UTC), (end - timedelta(microseconds=1)).astimezone(UTC)


def period_range(period: dict[str, Any]) -> tuple[datetime, datetime]:
    low = date_range(period["start"])[0] if "start" in period else MIN
    high = date_range(period["end"])[1] if "end" in period else MAX
    return low, high


def date_matches(target: tuple[datetime, datetime], prefix: str, query: str) -> bool:
    """The R4 prefix rules, range against range."""
    lo, hi = target
    qlo, qhi = date_range(query)
    if prefix == "eq":
        return lo >= qlo and hi <= qhi
    if prefix == "ne":
        return not (lo >= qlo and hi <= qhi)
    if prefix == "gt":
        return hi > qhi
    if prefix == "lt":
        return lo < qlo
    if prefix == "ge":
        return hi > qhi or (lo >= qlo and hi <= qhi)
    if prefix == "le":
        return lo < qlo or (lo >= qlo and hi <= qhi)
    if prefix == "sa":
        return lo > qhi
    if prefix == "eb":
        return hi < qlo
    raise AssertionError(prefix)


def effective(resource: Resource, name: str = "effective") -> list[tuple[datetime, datetime]]:
    """Ranges of a ``name[x]`` element that is a dateTime, instant or Period."""
    out = []
    for key in (f"{name}DateTime", f"{name}Instant", f"{name}Date"):
        if key in resource:
            out.append(date_range(resource[key]))
    if f"{name}Period" in resource:
        out.append(period_range(resource[f"{name}Period"]))
    return out


# -- numbers --------------------------------------------------------------------------


def number_matches(value: Decimal, prefix: str, query: str) -> bool:
    q = Decimal(query)
    exp = q.as_tuple().exponent
    assert isinstance(exp, int)
    half = Decimal((0, (5,), exp - 1))
    if prefix == "eq":
        return q - half <= value < q + half
    if prefix == "ne":
        return not (q - half <= value < q + half)
    return {
        "gt": value > q,
        "lt": value < q,
        "ge": value >= q,
        "le": value <= q,
    }[prefix]
