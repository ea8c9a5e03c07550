"""The sender registry: registration, validation, cache, first contact."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from adapters.hl7v2.senders import SenderDefaults, SenderError, SenderRegistry


def test_register_and_look_up(engine: Engine) -> None:
    registry = SenderRegistry(engine)
    sender = registry.add(
        "HIS", "绵阳市中心医院", "Organization/myzx", charset="GB18030", tz_offset="+0800"
    )
    assert sender.tz_offset == "+08:00"
    # The organisation's MRN system, shared with its PACS (adapters.dicom keys by the same).
    assert sender.mrn_system == "urn:hie:mrn:myzx"
    fresh = SenderRegistry(engine)
    assert fresh.lookup("HIS", "绵阳市中心医院") == sender
    assert fresh.by_id(sender.id) == sender
    assert fresh.lookup("HIS", "other") is None
    assert [s.label for s in fresh.all()] == ["HIS|绵阳市中心医院"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"charset": "KLINGON"}, "unknown character set"),
        ({"tz_offset": "+25:00"}, "invalid UTC offset"),
        ({"organization": "Hospital 1"}, "organization must be a reference"),
    ],
)
def test_invalid_settings_are_refused(engine: Engine, kw: dict[str, str], message: str) -> None:
    args = {"organization": "Organization/x", **kw}
    with pytest.raises(SenderError, match=message):
        SenderRegistry(engine).add("A", "F", args.pop("organization"), **args)


def test_duplicates_are_refused_and_first_contact_is_idempotent(engine: Engine) -> None:
    registry = SenderRegistry(engine)
    registry.add("A", "F", "Organization/x")
    with pytest.raises(SenderError, match="already registered"):
        registry.add("A", "F", "Organization/y")
    other = SenderRegistry(engine)
    assert other.register_on_first_contact("A", "F", SenderDefaults()).organization == (
        "Organization/x"
    )
    new = other.register_on_first_contact("B", "G", SenderDefaults("Organization/z"))
    assert new.auto_registered
    assert new.organization == "Organization/z"


def test_update_and_cache_refresh(engine: Engine) -> None:
    registry = SenderRegistry(engine, ttl=0.0)
    registry.add("A", "F", "Organization/x")
    registry.update("A", "F", charset="GB18030", strict=True)
    sender = SenderRegistry(engine).lookup("A", "F")
    assert sender is not None
    assert (sender.charset, sender.strict) == ("GB18030", True)
