"""Sorting, paging, shaping (_summary, _elements), totals, warnings and errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.hie.search.conformance.conftest import Server, query_of
from tests.hie.search.conformance.oracle import (
    Corpus,
    Resource,
    codings,
    date_matches,
    date_range,
    effective,
    has_code,
    norm,
    person_names,
    values,
)

Key = Callable[[Resource], Any]


def ordered(rs: list[Resource], key: Key, *, descending: bool = False) -> list[str]:
    """R4 sort order: by key, resources without a value last, then in load order."""
    present = [r for r in rs if key(r) is not None]
    missing = [r["id"] for r in rs if key(r) is None]
    present.sort(key=key, reverse=descending)  # stable: ties keep load order...
    if descending:
        # ...but reverse=True keeps ties in load order too, so nothing more to do.
        pass
    return [r["id"] for r in present] + missing


def birth_low(r: Resource) -> datetime | None:
    return date_range(r["birthDate"])[0] if "birthDate" in r else None


def birth_high(r: Resource) -> datetime | None:
    return date_range(r["birthDate"])[1] if "birthDate" in r else None


def obs_low(r: Resource) -> datetime | None:
    ranges = effective(r)
    return min(lo for lo, _ in ranges) if ranges else None


def obs_high(r: Resource) -> datetime | None:
    ranges = effective(r)
    return max(hi for _, hi in ranges) if ranges else None


def family(r: Resource) -> str | None:
    names = [norm(f) for f in values(r, "name", "family")]
    return min(names) if names else None


def heart(c: Corpus) -> list[Resource]:
    return [o for o in c.of("Observation") if has_code(o, "8867-4", "code")]


def quantity_low(r: Resource) -> float | None:
    qs = [q["value"] for q in values(r, "valueQuantity") if "value" in q]
    return min(qs) if qs else None


SORTS: list[tuple[str, Callable[[Corpus], list[str]]]] = [
    ("Patient?_sort=birthdate", lambda c: ordered(c.of("Patient"), birth_low)),
    ("Patient?_sort=-birthdate", lambda c: ordered(c.of("Patient"), birth_high, descending=True)),
    ("Patient?_sort=family", lambda c: ordered(c.of("Patient"), family)),
    ("Patient?_sort=-family", lambda c: _desc_text(c.of("Patient"), family)),
    ("Patient?_sort=_id", lambda c: ordered(c.of("Patient"), lambda r: r["id"])),
    ("Patient?_sort=-_id", lambda c: ordered(c.of("Patient"), lambda r: r["id"], descending=True)),
    (
        "Patient?_sort=gender,-birthdate",
        lambda c: _multi(
            c.of("Patient"),
            [(lambda r: r.get("gender"), False), (birth_high, True)],
        ),
    ),
    ("Observation?code=8867-4&_sort=date", lambda c: ordered(heart(c), obs_low)),
    ("Observation?code=8867-4&_sort=-date", lambda c: ordered(heart(c), obs_high, descending=True)),
    (
        "Observation?code=8867-4&_sort=value-quantity",
        lambda c: ordered(heart(c), quantity_low),
    ),
    (
        "Observation?code=8867-4&_sort=status,-date",
        lambda c: _multi(heart(c), [(lambda r: r.get("status"), False), (obs_high, True)]),
    ),
    ("Patient?_sort=name", lambda c: ordered(c.of("Patient"), _min_name)),
    ("Patient?_sort=_lastUpdated", lambda c: [r["id"] for r in c.of("Patient")]),
    # Date clauses on the sort parameter itself (read from the row that sorts).
    (
        "Observation?code=8867-4&date=ge2023&date=lt2025&_sort=-date",
        lambda c: ordered(dated(heart(c), "2023", "2025"), obs_high, descending=True),
    ),
    (
        "Observation?code=8867-4&date=ge2015&date=lt2020&_sort=date",
        lambda c: ordered(dated(heart(c), "2015", "2020"), obs_low),
    ),
    (
        "Observation?date=ge2024-01&date=lt2024-06&_sort=-date",
        lambda c: ordered(
            dated(c.of("Observation"), "2024-01", "2024-06"), obs_high, descending=True
        ),
    ),
    (
        "Observation?date=2024-01,2024-05&_sort=-date",
        lambda c: ordered(
            [
                r
                for r in c.of("Observation")
                if any(
                    date_matches(t, "eq", m) for t in effective(r) for m in ("2024-01", "2024-05")
                )
            ],
            obs_high,
            descending=True,
        ),
    ),
]


def dated(rs: list[Resource], start: str, end: str) -> list[Resource]:
    """``date=ge{start}&date=lt{end}``."""
    return [
        r
        for r in rs
        if any(date_matches(t, "ge", start) and date_matches(t, "lt", end) for t in effective(r))
    ]


def _min_name(r: Resource) -> str | None:
    names = [norm(n) for n in person_names(r)]
    return min(names) if names else None


def _desc_text(rs: list[Resource], key: Callable[[Resource], str | None]) -> list[str]:
    """Descending by the greatest value (MAX), missing last, ties in load order."""

    def biggest(r: Resource) -> str | None:
        names = [norm(f) for f in values(r, "name", "family")]
        return max(names) if names else None

    return ordered(rs, biggest, descending=True)


def _multi(rs: list[Resource], keys: list[tuple[Key, bool]]) -> list[str]:
    """Several sort keys: sort by the last key first (stable sorts compose)."""
    items = list(rs)
    for key, desc in reversed(keys):
        present = [r for r in items if key(r) is not None]
        missing = [r for r in items if key(r) is None]
        present.sort(key=key, reverse=desc)
        items = present + missing
    return [r["id"] for r in items]


@pytest.mark.parametrize(("query", "expect"), SORTS, ids=[q for q, _ in SORTS])
def test_sort(
    query: str, expect: Callable[[Corpus], list[str]], server: Server, corpus: Corpus
) -> None:
    matches, _ = server.search(query + "&_count=500")
    assert matches == expect(corpus)


@pytest.mark.parametrize(
    "query",
    [
        "Observation?code=8867-4&_sort=-date&_count=7",
        "Observation?code=8867-4&date=ge2010&date=lt2025&_sort=-date&_count=4",
        "Observation?date=ge2024-01&date=lt2024-06&_sort=date&_count=3",
        "Observation?code=8867-4&_sort=status,date&_count=5",
        "Patient?_sort=family&_count=3",
        "Encounter?_count=13",
        "Observation?subject.name=trent&_sort=-value-quantity&_count=11",
    ],
)
def test_pages_neither_skip_nor_repeat_and_previous_walks_back(query: str, server: Server) -> None:
    base, _, count_text = query.rpartition("_count=")
    everything, _ = server.search(base + "_count=1000")
    count = int(count_text)
    pages = list(server.pages(query))
    ids = [[e["resource"]["id"] for e in p.get("entry", [])] for p in pages]
    assert [i for page in ids for i in page] == everything
    assert all(len(page) == count for page in ids[:-1])
    assert "previous" not in {link["relation"] for link in pages[0]["link"]}
    back = []
    page = pages[-1]
    while True:
        back.insert(0, [e["resource"]["id"] for e in page.get("entry", [])])
        prev = [link["url"] for link in page["link"] if link["relation"] == "previous"]
        if not prev:
            break
        page = server.get(prev[0].split("/fhir/", 1)[1])
    assert back == ids


def test_links_repeat_the_query(server: Server) -> None:
    page = server.get("Observation?code=8867-4&_sort=-date&_count=2")
    links = {link["relation"]: link["url"] for link in page["link"]}
    assert links["self"].startswith("https://hie.example.cn/fhir/Observation?")
    params = dict(query_of(links["next"]))
    assert params["code"] == "8867-4"
    assert params["_sort"] == "-date"
    assert params["_count"] == "2"
    assert "_cursor" in params


def test_total_modes(server: Server, corpus: Corpus) -> None:
    n = len(heart(corpus))
    first = server.get("Observation?code=8867-4&_count=5")
    assert "total" not in first, "a count runs only when asked for"
    assert server.get("Observation?code=8867-4&_count=500")["total"] == n, "a whole result"
    accurate = server.get("Observation?code=8867-4&_count=5&_total=accurate")
    assert accurate["total"] == n
    assert server.get(_next(accurate))["total"] == n
    assert "total" not in server.get("Observation?code=8867-4&_count=5&_total=none")
    assert "total" not in server.get("Observation?code=8867-4&_count=500&_total=none")
    estimate = server.get("Observation?code=8867-4&_count=5&_total=estimate")
    assert isinstance(estimate["total"], int)
    counted = server.get("Observation?code=8867-4&_summary=count")
    assert counted["total"] == n
    assert "entry" not in counted
    assert server.get("Observation?code=8867-4&_count=0")["total"] == n


def _next(page: dict[str, Any]) -> str:
    url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    return url.split("/fhir/", 1)[1]


SUBSETTED = "SUBSETTED"


def _tags(resource: Resource) -> list[str]:
    return [t.get("code") for t in resource.get("meta", {}).get("tag", [])]


def test_summary_true_keeps_summary_elements(server: Server, corpus: Corpus) -> None:
    page = server.get("Patient?_id=cn1&_summary=true")
    (entry,) = page["entry"]
    got = entry["resource"]
    sent = corpus.get("Patient", "cn1")
    assert sent is not None
    assert SUBSETTED in _tags(got)
    assert got["name"] == sent["name"]
    assert got["identifier"] == sent["identifier"]
    assert "generalPractitioner" not in got, "not a summary element"
    assert "edge" in _tags(got), "existing tags are kept"


def test_summary_text_and_data(server: Server, corpus: Corpus) -> None:
    text = server.get("Observation?_id=bp-high&_summary=text")["entry"][0]["resource"]
    assert set(text) <= {"resourceType", "id", "meta", "text", "status", "code"}
    assert SUBSETTED in _tags(text)
    data = server.get("Observation?_id=bp-high&_summary=data")["entry"][0]["resource"]
    sent = corpus.get("Observation", "bp-high")
    assert sent is not None
    assert data["component"] == sent["component"]
    assert "text" not in data


def test_elements(server: Server, corpus: Corpus) -> None:
    page = server.get("Patient?_id=cn1,cn2&_elements=gender,birthDate")
    for entry in page["entry"]:
        got = entry["resource"]
        sent = corpus.get("Patient", got["id"])
        assert sent is not None
        assert set(got) == {"resourceType", "id", "meta", "gender", "birthDate"}
        assert got["birthDate"] == sent["birthDate"]
        assert SUBSETTED in _tags(got)
    choice = server.get("Patient?_id=renee&_elements=deceased")["entry"][0]["resource"]
    assert choice["deceasedDateTime"] == "2023-04-01T08:00:00+08:00"


def test_unknown_parameters_warn_or_fail_strictly(server: Server, corpus: Corpus) -> None:
    page = server.get("Patient?nickname=x&gender=female&_count=500")
    outcome = [e for e in page["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1
    issue = outcome[0]["resource"]["issue"][0]
    assert issue["severity"] == "warning"
    assert "nickname" in issue["diagnostics"]
    matches = {e["resource"]["id"] for e in page["entry"] if e["search"]["mode"] == "match"}
    assert matches == corpus.ids("Patient", lambda r: r.get("gender") == "female")
    status, body = server.status("Patient?nickname=x", {"Prefer": "handling=strict"})
    assert status == 400
    assert "nickname" in body["issue"][0]["diagnostics"]
    status, body = server.status("Patient?_text=x", {"Prefer": "handling=strict"})
    assert status == 400
    assert server.status("Patient?gender=male", {"Prefer": "handling=strict"})[0] == 200


MALFORMED = [
    ("Patient?birthdate=2020-13-01", "birthdate"),
    ("Patient?birthdate=xx2020", "birthdate"),
    ("Patient?birthdate=2020-02-30", "birthdate"),
    ("Observation?value-quantity=abc", "value-quantity"),
    ("Observation?value-quantity=5|http://unitsofmeasure.org", "value-quantity"),
    ("RiskAssessment?probability=gt0.5.5", "probability"),
    ("Patient?name:sounds=x", "name"),
    ("Patient?gender.name=x", "gender"),
    ("Observation?subject.nothing=x", "subject"),
    ("Observation?subject:Device.name=x", "subject"),
    ("Observation?subject=Organization/1", "subject"),
    ("Patient?_sort=nothing", "_sort"),
    ("Patient?_count=-1", "_count"),
    ("Patient?_count=ten", "_count"),
    ("Patient?_include=Nothing:x", "_include"),
    ("Patient?_include=Observation:subject", "_include"),
    ("Patient?_has:Observation:nothing:code=x", "_has"),
    ("Patient?_summary=maybe", "_summary"),
    ("Patient?_total=some", "_total"),
    ("Patient?identifier:of-type=abc", "identifier"),
    ("Patient?_cursor=not-a-cursor", "_cursor"),
    ("Observation?component-code-value-quantity=8480-6", "component-code-value-quantity"),
    ("Patient?gender:missing=maybe", "gender"),
    ("ValueSet?url:exact=x", "url"),
]


@pytest.mark.parametrize(("query", "name"), MALFORMED, ids=[q for q, _ in MALFORMED])
def test_malformed_values_are_400_naming_the_parameter(
    query: str, name: str, server: Server
) -> None:
    status, body = server.status(query)
    assert status == 400, body
    assert body["resourceType"] == "OperationOutcome"
    assert name in body["issue"][0]["diagnostics"]


def test_post_search_is_the_same_search(server: Server) -> None:
    form = "code=8867-4&subject.name=trent&_sort=-date"
    posted = server.api.client.post(
        "/fhir/Observation/_search",
        data=form,
        headers={
            "Authorization": f"Bearer {server.api.token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert posted.status_code == 200
    got = [e["resource"]["id"] for e in posted.get_json()["entry"]]
    assert got == server.search("Observation?" + form)[0]
    assert got


def test_token_codes_keep_their_system(server: Server, corpus: Corpus) -> None:
    """A code that appears under two systems only matches the system asked for."""
    both = corpus.ids("Observation", lambda r: ("http://loinc", "85353-1") in codings(r, "code"))
    assert both
    assert server.ids("Observation?code=http://loinc.org|85353-1&_count=500").isdisjoint(both)
