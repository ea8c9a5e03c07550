"""Access grants recorded and looked up through the exchange, on SQLite and PostgreSQL,
and the in-memory twin answering the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from hie.app import Services
from hie.consent.grants import CARD_PRESENTED, TREATMENT, Grant, GrantStore, MemoryGrantStore
from hie.context import RequestContext

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
ORG_A = "Organization/a"
ORG_B = "Organization/b"
ORG_C = "Organization/c"


def _grant(patient: str, org: str, hours: int = 24, purpose: str = TREATMENT) -> Grant:
    return Grant(
        patient=patient,
        organization=org,
        purpose=purpose,
        start=T0,
        end=T0 + timedelta(hours=hours),
        evidence="Encounter/e1",
        recorded_by="reader-1",
    )


def _exercise(store: GrantStore) -> None:
    first = store.add(_grant("Patient/p1", ORG_A))
    assert first.id is not None
    assert first.basis == CARD_PRESENTED
    store.add(_grant("Patient/p1", ORG_A, hours=48))
    store.add(_grant("Patient/p2", ORG_B, purpose="HRESCH"))

    inside = T0 + timedelta(hours=1)
    found = store.active(["Patient/p1"], ORG_A, inside)
    assert [g.end for g in found] == [T0 + timedelta(hours=48), T0 + timedelta(hours=24)]
    assert found[1].evidence == "Encounter/e1"
    assert found[1].recorded_by == "reader-1"
    assert found[0].start == T0
    # another organisation, another patient, before the start, at and after the end: nothing
    assert store.active(["Patient/p1"], ORG_B, inside) == []
    assert store.active(["Patient/p9"], ORG_A, inside) == []
    assert store.active(["Patient/p1"], ORG_A, T0 - timedelta(seconds=1)) == []
    assert len(store.active(["Patient/p1"], ORG_A, T0 + timedelta(hours=24))) == 1
    assert store.active(["Patient/p1"], ORG_A, T0 + timedelta(hours=48)) == []
    assert store.active([], ORG_A, inside) == []
    # any of several patients (source and enterprise records of one person)
    assert len(store.active(["Patient/p9", "Patient/p1"], ORG_A, inside)) == 2
    # purpose filter
    assert store.active(["Patient/p2"], ORG_B, inside, TREATMENT) == []
    assert len(store.active(["Patient/p2"], ORG_B, inside, "HRESCH")) == 1
    assert store.granted_patients(ORG_A, inside) == {"Patient/p1"}
    assert store.granted_patients(ORG_B, inside, TREATMENT) == set()
    assert store.granted_patients(ORG_A, T0 + timedelta(days=3)) == set()


def test_sql_grant_store_through_the_exchange(services: Services) -> None:
    ctx = RequestContext(actor="reader-1", organization=ORG_C)
    recorded = services.exchange.record_grant(ctx, _grant("Patient/p7", ORG_C))
    assert recorded.id is not None
    found = services.exchange.active_grants(["Patient/p7"], ORG_C, T0 + timedelta(hours=2))
    assert [g.id for g in found] == [recorded.id]
    _exercise(services.exchange.grants)
    services.audit.close()  # flush the group-commit writer
    with services.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT e.subtype, r.ref, e.organization FROM audit_event e "
                "JOIN audit_ref r ON r.seq = e.seq AND r.kind = 'p' WHERE e.subtype = 'grant'"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("grant", "Patient/p7", ORG_C)]


@pytest.mark.parametrize("store", [MemoryGrantStore()], ids=["memory"])
def test_memory_twin(store: GrantStore) -> None:
    _exercise(store)
