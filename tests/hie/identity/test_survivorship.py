import datetime as dt

import pytest

from hie.identity import (
    CARD_SOURCE,
    Identifier,
    PersonName,
    PersonRecord,
    golden_record,
    survivorship_order,
)


def at(day: int) -> dt.datetime:
    return dt.datetime(2026, 1, day, tzinfo=dt.UTC)


CARD = PersonRecord(
    "card:1", CARD_SOURCE, names=(PersonName("张", "伟"),), birth_date=dt.date(1980, 1, 1),
    gender="male", phone=None, address="涪城区临园路66号", resident_id="510703198001011232",
    card_no="5107100000001234", updated_at=at(1),
)  # fmt: skip
OLD_VISIT = PersonRecord(
    "h1:1", "h1", names=(PersonName("ZHANG", "WEI"),), birth_date=dt.date(1980, 1, 10),
    gender="male", phone="13800000000", address="游仙区东津路1号", locality="游仙区",
    identifiers=(Identifier("urn:mrn:h1", "1"),), updated_at=at(5),
)  # fmt: skip
NEW_VISIT = PersonRecord(
    "h2:7", "h2", names=(PersonName("张", "玮"),), birth_date=dt.date(1980, 1, 1),
    gender=None, phone="13912345678", address=None, locality="涪城区", postal_code="621000",
    identifiers=(Identifier("urn:mrn:h2", "7"),), updated_at=at(20),
)  # fmt: skip


def test_order_is_card_first_then_most_recent() -> None:
    undated = PersonRecord("h3:1", "h3")
    order = survivorship_order([undated, OLD_VISIT, NEW_VISIT, CARD])
    assert [r.record_id for r in order] == ["card:1", "h2:7", "h1:1", "h3:1"]


def test_card_data_wins_then_the_latest_hospital_data_fills_gaps() -> None:
    golden = golden_record("E1", [OLD_VISIT, NEW_VISIT, CARD])
    assert golden.record_id == "E1"
    assert golden.names == (PersonName("张", "伟"),)  # card, though h2 is newer
    assert golden.address == "涪城区临园路66号"
    assert golden.phone == "13912345678"  # the card has none: the newest hospital's
    assert golden.locality == "涪城区"
    assert golden.postal_code == "621000"
    assert golden.resident_id == "510703198001011232"
    assert golden.gender == "male"
    assert set(golden.identifiers) == {Identifier("urn:mrn:h1", "1"), Identifier("urn:mrn:h2", "7")}
    assert golden.updated_at == at(20)


def test_without_a_card_the_most_recent_hospital_wins() -> None:
    golden = golden_record("E1", [OLD_VISIT, NEW_VISIT])
    assert golden.names == (PersonName("张", "玮"),)
    assert golden.birth_date == dt.date(1980, 1, 1)
    assert golden.address == "游仙区东津路1号"  # the newest has no address
    assert golden.gender == "male"


def test_golden_record_needs_sources() -> None:
    with pytest.raises(ValueError, match="at least one"):
        golden_record("E1", [])
