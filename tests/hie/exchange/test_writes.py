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
