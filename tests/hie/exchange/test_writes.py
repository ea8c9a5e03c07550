"""Writes through the exchange service API (the path HL7 and DICOM feeds take)."""

from __future__ import annotations

import pytest

from hie.app import Services
from hie.context import RequestContext, Scopes
from hie.errors import InvalidResource

CTX = RequestContext(actor="feed", scopes=Scopes("system/*.cruds"))


def test_a_nul_character_is_a_validation_error_not_a_database_failure(
    services: Services,
) -> None:
    exchange = services.exchange
    with pytest.raises(InvalidResource, match=r"NUL character .* at Patient.name\[0\].family"):
        exchange.create(CTX, "Patient", {"resourceType": "Patient", "name": [{"family": "王\x00"}]})
    kept = exchange.create(CTX, "Patient", {"resourceType": "Patient", "name": [{"family": "王"}]})
    pid = kept.stored.id
    with pytest.raises(InvalidResource, match="NUL"):
        exchange.update(
            CTX,
            "Patient",
            pid,
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"family": "王"}],
                "gender": "male",
                "address": [{"city": "绵阳\x00"}],
            },
        )
    # The store is untouched and still usable after the refusal.
    read = exchange.read(CTX, "Patient", pid)
    assert read.version == 1
    assert "\\u0000" not in read.content.decode()


def _history_versions(services: Services, resource_type: str, id_: str) -> list[int]:
    result = services.exchange.history(CTX, resource_type, id_, [])
    return sorted(s.version for s in result.entries)


def test_an_update_that_only_changes_meta_source_writes_no_new_version(
    services: Services,
) -> None:
    """A feed re-sending the same content from a new message: no new version (as HAPI)."""
    exchange = services.exchange
    ident = [{"system": "urn:hie:test:mrn", "value": "NOOP1"}]
    body = {
        "resourceType": "Observation",
        "meta": {"source": "urn:hie:test:msg#1"},
        "identifier": ident,
        "status": "final",
        "code": {"text": "血红蛋白"},
        "valueString": "141",
    }
    criteria = [("identifier", "urn:hie:test:mrn|NOOP1")]
    first = exchange.conditional_update(CTX, "Observation", criteria, dict(body))
    oid = first.stored.id
    resent = dict(body, meta={"source": "urn:hie:test:msg#2"})
    same = exchange.conditional_update(CTX, "Observation", criteria, resent)
    assert (same.stored.id, same.stored.version, same.status) == (oid, 1, 200)
    stored = exchange.read(CTX, "Observation", oid)
    assert b"urn:hie:test:msg#1" in stored.content, "the first version and its source stay"
    assert _history_versions(services, "Observation", oid) == [1]
    # A real change still makes a version, and carries its own source.
    changed = dict(body, meta={"source": "urn:hie:test:msg#3"}, valueString="142")
    after = exchange.conditional_update(CTX, "Observation", criteria, changed)
    assert after.stored.version == 2
    assert b"urn:hie:test:msg#3" in exchange.read(CTX, "Observation", oid).content
    assert _history_versions(services, "Observation", oid) == [1, 2]
    # Other meta is content: a new tag is a new version.
    tagged = dict(changed, meta={"source": "urn:hie:test:msg#4", "tag": [{"code": "x"}]})
    assert exchange.conditional_update(CTX, "Observation", criteria, tagged).stored.version == 3
