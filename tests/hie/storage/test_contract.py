"""One contract, three stores: memory, SQLite and PostgreSQL behave the same.

The memory twin covers the CRUD and history part; searching is the SQL stores' alone
(the search semantics are tested in depth by tests/hie/search/conformance).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hie.search import QueryParser, default_registry
from hie.search.rows import IndexRow, ReferenceRow, StringRow, TokenRow, UriRow
from hie.storage.memory import MemoryStore
from hie.storage.ports import (
    AuditRecord,
    Cursor,
    HistoryQuery,
    IdentityLink,
    NewVersion,
    SearchRequest,
    Store,
    UnitOfWork,
    VersionConflict,
)
from hie.storage.sql.audit import SqlAuditLog
from hie.storage.sql.engine import build_engine
from hie.storage.sql.store import SqlStore
from tests.support import fresh_database

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    engine = build_engine(fresh_database(request.param, request, tmp_path))
    sql = SqlStore(engine, audit=SqlAuditLog(engine))
    yield sql
    sql.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    sql = SqlStore(build_engine(fresh_database(request.param, request, tmp_path)))
    yield sql
    sql.close()


PARSER = QueryParser(default_registry())


def search(
    uow: UnitOfWork, type_: str, query: str, count: int = 10, cursor: Cursor | None = None
) -> tuple[list[str], int | None, Cursor | None]:
    params = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    parsed = PARSER.parse(type_, params)  # type: ignore[arg-type]
    page = uow.search(SearchRequest(parsed, count, cursor, total=True))
    return [s.id for s in page.items], page.total, page.next


def version(
    type_: str,
    id_: str,
    v: int,
    *,
    rows: tuple[IndexRow, ...] = (),
    deleted: bool = False,
    at: datetime = T0,
    expected: int | None = None,
) -> NewVersion:
    content = (
        b""
        if deleted
        else b'{"resourceType":"%s","id":"%s","v":%d}' % (type_.encode(), id_.encode(), v)
    )
    return NewVersion(type_, id_, v, at, deleted, content, "PUT", "Organization/a", rows, expected)


def test_write_then_read_current_and_versions(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p1", 1))
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p1", 2, at=T0 + timedelta(seconds=1), expected=1))
    with store.unit_of_work(write=False) as uow:
        current = uow.get("Patient", "p1")
        assert current is not None
        assert current.version == 2
        assert current.last_updated == T0 + timedelta(seconds=1)
        assert current.custodian == "Organization/a"
        first = uow.get_version("Patient", "p1", 1)
        assert first is not None
        assert first.content.endswith(b'"v":1}')
        assert uow.get_version("Patient", "p1", 3) is None
        assert uow.get("Observation", "p1") is None  # each type has its own id space


def test_same_id_in_two_types_is_two_resources(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "x", 1))
        uow.write(version("Observation", "x", 1))
    with store.unit_of_work(write=False) as uow:
        patient, obs = uow.get("Patient", "x"), uow.get("Observation", "x")
        assert patient is not None
        assert obs is not None
        assert patient.content != obs.content


def test_stale_expected_version_conflicts(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p1", 1))
    with pytest.raises(VersionConflict), store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p1", 2, expected=5))


def test_failed_unit_of_work_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "gone", 1))
        raise RuntimeError("boom")
    with store.unit_of_work(write=False) as uow:
        assert uow.get("Patient", "gone") is None
        assert uow.history(HistoryQuery(type="Patient")) == []


def test_search_by_id_and_token_with_keyset_paging(sql_store: Store) -> None:
    store = sql_store
    with store.unit_of_work(write=True) as uow:
        for n in range(5):
            rows = (
                TokenRow("identifier", "urn:mrn", f"m{n % 2}"),
                TokenRow("identifier", None, "bare"),
            )
            uow.write(version("Patient", f"p{n}", 1, rows=rows))
        uow.write(version("Patient", "d", 1, deleted=True))
    with store.unit_of_work(write=False) as uow:
        assert search(uow, "Patient", "identifier=urn:mrn|m0")[:2] == (["p0", "p2", "p4"], 3)
        page1, total, after = search(uow, "Patient", "", count=2)
        assert (page1, total) == (["p0", "p1"], 5)  # deletions never count
        page2, _, _ = search(uow, "Patient", "", count=2, cursor=after)
        assert page2 == ["p2", "p3"]
        assert search(uow, "Patient", "identifier=m1")[0] == ["p1", "p3"]
        assert len(search(uow, "Patient", "identifier=|bare")[0]) == 5
        assert len(search(uow, "Patient", "identifier=urn:mrn|")[0]) == 5
        both = search(uow, "Patient", "_id=p1,p2&identifier=urn:mrn|m1,urn:mrn|zz")[0]
        assert both == ["p1"]


def test_searches_and_reads_in_a_unit_of_work_see_its_own_creates(sql_store: Store) -> None:
    """Creates wait to be inserted until a read needs them or the commit; every read in
    the same unit of work (the probes conditional writes make, get, any search) sees
    them, in write order after the stored ones."""
    store = sql_store

    def probe(uow: UnitOfWork, type_: str, query: str, count: int = 2) -> list[str]:
        name, value = query.split("=", 1)
        page = uow.search(SearchRequest(PARSER.parse(type_, [(name, value)]), count))
        return [s.id for s in page.items]

    with store.unit_of_work(write=True) as uow:
        uow.write(version("Observation", "o0", 1, rows=(TokenRow("identifier", "s", "a"),)))
    with store.unit_of_work(write=True) as uow:
        assert probe(uow, "Observation", "identifier=s|a") == ["o0"]
        uow.write(version("Observation", "o1", 1, rows=(TokenRow("identifier", "s", "b"),)))
        uow.write(version("Observation", "o2", 1, rows=(TokenRow("identifier", "s", "a"),)))
        source = UriRow("_source", "urn:msg#1")
        uow.write(version("Provenance", "v1", 1, rows=(source,)))
        assert probe(uow, "Observation", "identifier=s|b") == ["o1"]
        assert probe(uow, "Observation", "identifier=s|a") == ["o0", "o2"]
        assert probe(uow, "Observation", "identifier=s|a", count=1) == ["o0"]
        assert probe(uow, "Observation", "identifier=s|c") == []
        assert probe(uow, "Patient", "identifier=s|b") == []  # other types never match
        assert probe(uow, "Provenance", "_source=urn:msg#1") == ["v1"]
        assert probe(uow, "Provenance", "_source=urn:msg#2") == []
        fresh = uow.get("Observation", "o2")
        assert fresh is not None
        assert (fresh.version, fresh.content) == (1, version("Observation", "o2", 1).content)
        assert uow.get("Observation", "o9") is None
        assert probe(uow, "Observation", "identifier=b") == ["o1"]  # not a probe: any system
        uow.write(version("Observation", "o3", 1, rows=(TokenRow("identifier", "s", "b"),)))
        assert probe(uow, "Observation", "identifier=s|b") == ["o1", "o3"]
    with store.unit_of_work(write=False) as uow:
        assert probe(uow, "Observation", "identifier=s|a") == ["o0", "o2"]
        assert probe(uow, "Provenance", "_source=urn:msg#1") == ["v1"]
    with pytest.raises(RuntimeError), store.unit_of_work(write=True) as uow:
        uow.write(version("Observation", "o4", 1, rows=(TokenRow("identifier", "s", "d"),)))
        assert probe(uow, "Observation", "identifier=s|d") == ["o4"]
        raise RuntimeError("rolled back")
    with store.unit_of_work(write=False) as uow:
        assert probe(uow, "Observation", "identifier=s|d") == []
        assert uow.get("Observation", "o4") is None


def test_memory_twin_keeps_rows_but_does_not_search() -> None:
    store = MemoryStore()
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p", 1, rows=(StringRow("name", "zhang", "Zhang"),)))
    with store.unit_of_work(write=False) as uow:
        ((key, _),) = uow.scan("Patient", None, 10)
        assert uow.index_rows(key) == (StringRow("name", "zhang", "Zhang"),)
        with pytest.raises(NotImplementedError):
            uow.search(SearchRequest(PARSER.parse("Patient", []), 10))


def test_update_replaces_index_rows(sql_store: Store) -> None:
    store = sql_store
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p", 1, rows=(TokenRow("identifier", "s", "old"),)))
    with store.unit_of_work(write=True) as uow:
        uow.write(
            version("Patient", "p", 2, rows=(TokenRow("identifier", "s", "new"),), expected=1)
        )
    with store.unit_of_work(write=False) as uow:
        assert search(uow, "Patient", "identifier=s|old")[0] == []
        assert search(uow, "Patient", "identifier=s|new")[0] == ["p"]
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p", 3, deleted=True, expected=2))
    with store.unit_of_work(write=False) as uow:
        assert search(uow, "Patient", "identifier=s|new")[0] == []


def test_scan_count_and_reindex(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        for n in range(3):
            uow.write(version("Patient", f"p{n}", 1))
        uow.write(version("Observation", "o", 1))
        uow.write(version("Patient", "gone", 1, deleted=True))
    with store.unit_of_work(write=True) as uow:
        assert uow.count(None) == 4
        assert uow.count("Patient") == 3
        first = uow.scan("Patient", None, 2)
        rest = uow.scan("Patient", first[-1][0], 2)
        assert [s.id for _, s in first + rest] == ["p0", "p1", "p2"]
        uow.reindex(first[0][0], [TokenRow("identifier", "s", "again")])
        with pytest.raises(KeyError):
            uow.reindex(10_000, [])


def test_history_newest_first_filtered_and_paged(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "a", 1, at=T0))
        uow.write(version("Observation", "o", 1, at=T0 + timedelta(seconds=1)))
        uow.write(version("Patient", "a", 2, at=T0 + timedelta(seconds=2), expected=1))
        uow.write(
            version("Patient", "a", 3, at=T0 + timedelta(seconds=3), deleted=True, expected=2)
        )
    with store.unit_of_work(write=False) as uow:
        everything = uow.history(HistoryQuery(count=10))
        assert [(s.type, s.version) for _, s in everything] == [
            ("Patient", 3),
            ("Patient", 2),
            ("Observation", 1),
            ("Patient", 1),
        ]
        assert everything[0][1].deleted
        instance = uow.history(HistoryQuery(type="Patient", id="a", count=10))
        assert [s.version for _, s in instance] == [3, 2, 1]
        since = HistoryQuery(type="Patient", since=T0 + timedelta(seconds=2), count=10)
        assert [s.version for _, s in uow.history(since)] == [3, 2]
        assert uow.count_history(since) == 2
        page = uow.history(HistoryQuery(count=2))
        rest = uow.history(HistoryQuery(count=2, before_seq=page[-1][0]))
        assert [s.version for _, s in rest] == [1, 1]


def test_audit_records_are_appended(store: Store) -> None:
    record = AuditRecord(T0, b"{}", "rest", "read", "R", "0", "tester", "Organization/a")
    with store.unit_of_work(write=True) as uow:
        uow.append_audit([record, record])
    if isinstance(store, MemoryStore):
        assert store.audit == [record, record]


def test_concurrent_writers_with_same_expected_version_one_wins(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "race", 1))
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            with store.unit_of_work(write=True) as uow:
                uow.write(version("Patient", "race", 2, expected=1))
            outcomes.append("won")
        except VersionConflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]


def test_lookup_outside_a_unit_of_work(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p1", 1))
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "p1", 2, deleted=True, expected=1))
    current = store.lookup("Patient", "p1")
    assert current is not None
    assert current.deleted
    assert current.version == 2
    first = store.lookup("Patient", "p1", 1)
    assert first is not None
    assert first.content.endswith(b'"v":1}')
    assert first.last_updated == T0
    assert store.lookup("Patient", "p1", 9) is None
    assert store.lookup("Patient", "nobody") is None


def test_consent_lookups_referring_and_token_values(store: Store) -> None:
    """The consent point's two reads: Consents of some patients that carry a marker
    row, and one holder of each distinct marker value."""

    def consent(id_: str, patient: str, shape: str | None) -> NewVersion:
        rows: list[IndexRow] = [ReferenceRow("patient", "Patient", patient, None, None)]
        if shape is not None:
            rows.append(TokenRow("_consent-shape", None, shape))
        return version("Consent", id_, 1, rows=tuple(rows))

    with store.unit_of_work(write=True) as uow:
        uow.write(consent("c1", "p1", "s1"))
        uow.write(consent("c2", "p2", "s1"))
        uow.write(consent("c3", "p2", "s2"))
        uow.write(consent("c4", "p3", None))  # withdrawn: no shape row
        uow.write(version("Consent", "c5", 1, rows=()))
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Consent", "c2", 2, deleted=True, expected=1))
    with store.unit_of_work(write=False) as uow:
        found = uow.referring("Consent", "patient", "Patient", ["p2", "p3"], "_consent-shape")
        assert [s.id for s in found] == ["c3"]
        assert uow.referring("Consent", "patient", "Patient", ["p9"], "_consent-shape") == []
        values = uow.token_values("Consent", "_consent-shape")
        assert [(code, s.id) for code, s in values] == [("s1", "c1"), ("s2", "c3")]


def _link(source: str, enterprise: str, keys: tuple[str, ...], **extra: object) -> IdentityLink:
    return IdentityLink(
        source_id=source,
        enterprise_id=enterprise,
        source="card",
        sealed=f"sealed-{source}",
        status="auto",
        updated=T0,
        keys=keys,
        **extra,  # type: ignore[arg-type]
    )


def test_identity_bulk_links_key_holders_and_candidate_members(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.identity.add_new(
            [
                _link("s1", "e1", ("k1", "k2"), rid_index="r1", rid_valid=True),
                _link("s2", "e1", ("k2",), rid_index=None),
                _link("s3", "e2", ("k3",), rid_index="r3", rid_valid=False, card_no="C3"),
            ]
        )
    with store.unit_of_work(write=False) as uow:
        tables = uow.identity
        assert tables.count() == 3
        got = tables.get("s3")
        assert got is not None
        assert (got.sealed, got.rid_valid, got.card_no) == ("sealed-s3", False, "C3")
        holders = sorted(
            (k, x.source_id, x.enterprise_id, x.rid_index, x.rid_valid)
            for k, x in tables.key_holders(["k2", "k3", "none"])
        )
        assert holders == [
            ("k2", "s1", "e1", "r1", True),
            ("k2", "s2", "e1", None, None),
            ("k3", "s3", "e2", "r3", False),
        ]
        assert all(x.sealed == "" for _, x in tables.key_holders(["k1"]))
        # candidates and their members in one read: every member of each enterprise
        members = tables.candidate_members(["k1"], 10)
        assert [m.source_id for m in members] == ["s1", "s2"]
        assert members == tables.members(tables.candidates(["k1"], 10))
        assert tables.candidate_members([], 10) == []
    # a later put replaces keys as before (bulk links are ordinary links)
    with store.unit_of_work(write=True) as uow:
        uow.identity.put(_link("s2", "e2", ("k3",)))
    with store.unit_of_work(write=False) as uow:
        assert [m.source_id for m in uow.identity.candidate_members(["k2"], 10)] == ["s1"]


def test_enterprise_link_reads_link_and_enterprise_patient(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.write(version("Patient", "e1", 1))
        uow.identity.add_new([_link("s1", "e1", ("k1",)), _link("s2", "e9", ("k1",))])
    found = store.enterprise_link("s1")
    assert found is not None
    enterprise, stored = found
    assert enterprise == "e1"
    assert stored is not None
    assert stored.content.endswith(b'"v":1}')
    assert store.enterprise_link("s2") == ("e9", None)  # enterprise Patient not written
    assert store.enterprise_link("nobody") is None
