"""Search through the exchange: paging under concurrent writes, the consent seam,
cursors, scopes on includes and reindexing (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from hie.app import Services
from hie.consent.decision import permit_all
from hie.context import RequestContext, Scopes
from hie.errors import InvalidSearch
from hie.exchange import Exchange
from hie.exchange.searching import decode_cursor, encode_cursor
from hie.fhir.types import SERVED_TYPES
from hie.fhir.validation import load_validator
from hie.search import Extractor, default_registry
from hie.settings import Settings
from hie.storage.ports import Cursor, Visibility
from tests.support import Api


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Plain FHIR storage: these tests count Patients, so no enterprise Patients."""
    return settings.replace(identity__enabled=False)


LOINC = "http://loinc.org"


def obs(n: int, *, day: int, subject: str = "Patient/p", code: str = "8867-4") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2024-03-{day:02d}",
        "valueQuantity": {"value": n},
    }


def load(api: Api, resources: list[dict[str, Any]]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }
    response = api.post("", bundle)
    assert response.status_code == 200, response.get_json()


def ids(page: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in page.get("entry", []) if e["search"]["mode"] == "match"]


def next_path(page: dict[str, Any]) -> str | None:
    for link in page["link"]:
        if link["relation"] == "next":
            return str(link["url"]).split("/fhir/", 1)[1]
    return None


@pytest.mark.parametrize("sort", ["", "&_sort=-date", "&_sort=value-quantity,-date"])
def test_paging_under_concurrent_writes_neither_skips_nor_repeats(api: Api, sort: str) -> None:
    load(api, [{"resourceType": "Patient", "id": "p"}])
    load(api, [obs(n, day=1 + n % 28) for n in range(40)])
    original = {f"o{n}" for n in range(40)}
    seen: list[str] = []
    path: str | None = f"Observation?code=8867-4&_count=6{sort}"
    extra = 100
    deleted: set[str] = set()
    while path is not None:
        response = api.get(path)
        assert response.status_code == 200
        page = response.get_json()
        seen += ids(page)
        path = next_path(page)
        # Between pages: new matches (early and late), changes that keep the sort values,
        # and a deletion of something not seen yet.
        load(api, [obs(extra, day=1), obs(extra + 1, day=28)])
        extra += 2
        unseen = sorted(original - set(seen) - deleted)
        if unseen:
            changed = obs(int(unseen[0][1:]), day=1 + int(unseen[0][1:]) % 28)
            changed["status"] = "amended"
            load(api, [changed])
        if len(unseen) > 1:
            assert api.delete(f"Observation/{unseen[-1]}").status_code == 204
            deleted.add(unseen[-1])
    assert len(seen) == len(set(seen)), "a page repeated a resource"
    assert original - deleted <= set(seen), "a page skipped a resource"


def test_paging_while_another_thread_writes(api: Api) -> None:
    load(api, [{"resourceType": "Patient", "id": "p"}])
    load(api, [obs(n, day=1 + n % 28) for n in range(60)])
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        n = 1000
        try:
            while not stop.is_set():
                load(api, [obs(n, day=1 + n % 28)])
                n += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen: list[str] = []
        path: str | None = "Observation?code=8867-4&_sort=date&_count=7"
        while path is not None:
            page = api.get(path).get_json()
            seen += ids(page)
            path = next_path(page)
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert len(seen) == len(set(seen))
    assert {f"o{n}" for n in range(60)} <= set(seen)


def test_cursor_round_trip_and_rejection() -> None:
    cursor = Cursor((1, "abc", None, Decimal("1.50")), 42, before=True)
    assert decode_cursor(encode_cursor(cursor)) == cursor
    for bad in ("", "abc", encode_cursor(cursor)[:-3], "W1tbXSwgIngiLCB0cnVlXQ"):
        with pytest.raises(InvalidSearch, match="_cursor"):
            decode_cursor(bad)


def test_a_cursor_from_another_sort_is_a_400(api: Api) -> None:
    load(api, [{"resourceType": "Patient", "id": "p"}])
    load(api, [obs(n, day=1 + n) for n in range(5)])
    page = api.get("Observation?_sort=-date&_count=2").get_json()
    cursor = next_path(page)
    assert cursor is not None
    token = cursor.split("_cursor=", 1)[1]
    response = api.get(f"Observation?_count=2&_cursor={token}")
    assert response.status_code == 400
    assert "_cursor" in response.get_json()["issue"][0]["diagnostics"]


def _exchange_hiding(services: Services, visibility: Visibility) -> Exchange:
    """The exchange as hie.app assembles it, with a consent policy that hides things."""
    settings = services.settings
    return Exchange(
        store=services.store,
        validator=load_validator(),
        extractor=Extractor(default_registry(), resource_types=sorted(SERVED_TYPES)),
        decide=permit_all,
        audit=services.audit,
        clock=lambda: datetime.now(UTC),
        new_id=lambda: "unused",
        resource_types=SERVED_TYPES,
        base_url=settings.fhir_base_url,
        visibility=lambda ctx: visibility,
    )


def test_hidden_resources_take_no_place_on_pages_totals_or_includes(
    services: Services, api: Api
) -> None:
    hospital_a = services.issuer.issue(
        subject="a", scope="system/*.cruds", ttl=600, organization="Organization/a"
    )
    hospital_b = services.issuer.issue(
        subject="b", scope="system/*.cruds", ttl=600, organization="Organization/b"
    )
    load(Api(api.client, hospital_a), [{"resourceType": "Patient", "id": "pa"}])
    load(Api(api.client, hospital_b), [{"resourceType": "Patient", "id": "pb"}])
    load(Api(api.client, hospital_a), [obs(n, day=n + 1, subject="Patient/pa") for n in range(6)])
    load(
        Api(api.client, hospital_b),
        [obs(n, day=n + 1, subject="Patient/pb") for n in range(10, 16)],
    )
    exchange = _exchange_hiding(
        services, Visibility(hidden_custodians=frozenset({"Organization/b"}))
    )
    ctx = RequestContext(actor="t", scopes=Scopes("system/*.cruds"))
    first = exchange.search(ctx, "Observation", [("_count", "4"), ("_total", "accurate")])
    assert first.total == 6, "hidden resources never count"
    assert len(first.entries) == 4
    assert first.next_cursor is not None
    rest = exchange.search(ctx, "Observation", [("_count", "4"), ("_cursor", first.next_cursor)])
    assert len(rest.entries) == 2
    assert rest.next_cursor is None
    shown = {s.id for s in first.entries + rest.entries}
    assert shown == {f"o{n}" for n in range(6)}
    chained = exchange.search(ctx, "Observation", [("subject._id", "pb")])
    assert chained.entries == []
    assert chained.total == 0
    has = exchange.search(ctx, "Patient", [("_has:Observation:subject:code", "8867-4")])
    assert [s.id for s in has.entries] == ["pa"]
    included = exchange.search(
        ctx, "Patient", [("_id", "pa,pb"), ("_revinclude", "Observation:subject")]
    )
    assert [s.id for s in included.entries] == ["pa"]
    assert {s.id for s in included.included} == {f"o{n}" for n in range(6)}
    everything = exchange.everything(ctx, "pa", [])
    assert {s.id for s in everything.entries} == {"pa", *(f"o{n}" for n in range(6))}


def test_includes_respect_the_scopes(services: Services, api: Api) -> None:
    load(api, [{"resourceType": "Patient", "id": "p"}])
    load(api, [obs(1, day=1)])
    narrow = services.issuer.issue(subject="n", scope="system/Observation.rs", ttl=600)
    page = Api(api.client, narrow).get("Observation?_include=Observation:subject").get_json()
    assert [e["search"]["mode"] for e in page["entry"]] == ["match"]
    every = Api(api.client, narrow).get("Patient/p/$everything")
    assert every.status_code == 403
    both = services.issuer.issue(
        subject="n", scope="system/Observation.rs system/Patient.r", ttl=600
    )
    page = Api(api.client, both).get("Patient/p/$everything").get_json()
    assert {e["resource"]["resourceType"] for e in page["entry"]} == {"Patient", "Observation"}


def test_reindex_rebuilds_what_searches_use(services: Services, api: Api) -> None:
    load(api, [{"resourceType": "Patient", "id": "p", "name": [{"family": "Reindexed"}]}])
    with services.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM idx_string")
    assert api.get("Patient?name=reindexed").get_json()["total"] == 0
    progress: list[tuple[int, int]] = []
    done = services.exchange.reindex(
        "Patient", batch=1, progress=lambda d, t: progress.append((d, t))
    )
    assert done == 1
    assert progress == [(1, 1)]
    assert api.get("Patient?name=reindexed").get_json()["total"] == 1
    assert services.exchange.reindex(batch=100) >= 1
