"""ACKs: structure (checked with hl7apy), codes, ERR segments, addressing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from adapters.hl7v2.ack import (
    AckBuilder,
    Problem,
    commit_code,
    guess_control_id,
    wants_application_ack,
)
from adapters.hl7v2.message import read_message
from tests.adapters.hl7v2.hl7_support import fixture_bytes

CLOCK = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=8)))


def builder() -> AckBuilder:
    return AckBuilder("HIE", "MY-HIE", clock=lambda: CLOCK)


def _segments(ack: bytes, codec: str = "ascii") -> list[list[str]]:
    return [s.split("|") for s in ack.decode(codec).split("\r") if s]


def test_aa_addresses_the_sender_and_echoes_the_control_id() -> None:
    msg = read_message(fixture_bytes("valid/msconv__ADT-A01-01.hl7"))
    ack = builder().ack(msg.msh, msg.delimiters, "AA")
    msh, msa = _segments(ack)
    assert msh[2] == "EHRApp^1.Edu^ISO"  # our MSH-3 is their MSH-5
    assert msh[4] == "ADTApp"  # their MSH-3 becomes MSH-5
    assert msh[5] == "GHHSFacility^2.16.840.1.122848.1.30^ISO"
    assert msh[6] == "20240506070809+0800"
    assert msh[8] == "ACK^A01^ACK"
    assert msh[10:12] == ["P", "2.8"]
    assert msa == ["MSA", "AA", "MSG00001"]


def test_ack_ids_are_unique() -> None:
    b = builder()
    assert len({b.next_id() for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    "name",
    [
        "msconv__ADT-A01-01.hl7",  # 2.8
        "msconv__ADT01-28.hl7",  # 2.5.1
        "msconv__LRI_2.0-NG_CBC_Typ_Message.hl7",
    ],
)
def test_acks_parse_as_valid_ack_messages_with_hl7apy(name: str) -> None:
    # Versions before 2.5 have no ERR-2..8, which we send anyway (ERR-3/4/8 carry the code,
    # severity and text); their ACKs are checked field by field below.
    msg = read_message(fixture_bytes(f"valid/{name}"))
    problem = Problem(101, "patient identifier list is required", segment="PID", field=3)
    ack = builder().ack(msg.msh, msg.delimiters, "AE", [problem])
    parsed = parse_message(
        ack.decode("ascii"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
    )
    parsed.validate()
    assert parsed.msa.msa_1.value == "AE"
    assert parsed.msa.msa_2.value == msg.control_id


def test_err_segment_carries_code_severity_location_and_text() -> None:
    msg = read_message(fixture_bytes("valid/msconv__ADT-A01-01.hl7"))
    problem = Problem(102, "date/time of birth: '196203520' is not a date", segment="PID", field=7)
    ack = builder().ack(msg.msh, msg.delimiters, "AE", [problem])
    err = _segments(ack)[2]
    assert err[0] == "ERR"
    assert err[2] == "PID^1^7^1"
    assert err[3] == "102^Data type error^HL70357"
    assert err[4] == "E"
    assert err[8] == "PID-7: date/time of birth: '196203520' is not a date"


def test_old_versions_also_get_err1_and_msa3() -> None:
    msg = read_message(fixture_bytes("valid/msconv__ADT01-23.hl7"))  # v2.3
    ack = builder().ack(msg.msh, msg.delimiters, "AR", [Problem(200, "no", segment="MSH", field=9)])
    msh, msa, err = _segments(ack)
    assert msh[8] == "ACK^A01"
    assert msa[3] == "MSH-9: no"
    assert err[1] == "MSH^1^9^200&Unsupported message type&HL70357"
    assert err[3] == "200^Unsupported message type^HL70357"


def test_texts_are_escaped_in_the_senders_delimiters() -> None:
    msg = read_message(fixture_bytes("valid/hapi__segmentfinder_a24_custom_delimiters.hl7"))
    ack = builder().ack(msg.msh, msg.delimiters, "AE", [Problem(207, "a^b|c~d")])
    text = ack.decode()
    assert text.startswith("MSH^~|\\&^")
    assert "a\\F\\b\\R\\c\\S\\d" in text
    reread = read_message(ack)
    err = reread.first("ERR")
    assert err is not None
    assert err[8].text == "a^b|c~d"


def test_ack_is_encoded_in_the_message_charset() -> None:
    raw = (
        "MSH|^~\\&|医院HIS|绵阳医院|HIE|HIE|20240101||ADT^A01^ADT_A01|X1|P|2.5\r"
        "PID|1||M1^^^^MR||张^三\r"
    ).encode("gb18030")
    msg = read_message(raw, "GB18030")
    ack = builder().ack(msg.msh, msg.delimiters, "AE", [Problem(101, "姓名缺失")], msg.charset)
    assert "绵阳医院" in ack.decode("gb18030")
    assert "姓名缺失" in ack.decode("gb18030")


def test_minimal_ack_for_an_unreadable_header() -> None:
    raw = b"MSH|^|SEND|FAC|||20240101||ADT^A01|CTRL-7|P|2.5\r"
    control = guess_control_id(raw)
    ack = builder().minimal("AR", [Problem(102, "MSH-2 '^' is invalid")], control)
    msh, msa, err = _segments(ack)
    assert msh[:3] == ["MSH", "^~\\&", "HIE"]
    assert msh[8] == "ACK^^ACK"
    assert msa == ["MSA", "AR", "CTRL-7"]
    assert err[3].startswith("102^")
    parsed = parse_message(ack.decode(), validation_level=VALIDATION_LEVEL.STRICT)
    parsed.validate()


@pytest.mark.parametrize(
    "raw", [b"", b"MSHH0\r", b"\x00\x00\x02MSH|0000|||M|", b"MSH|^|||||||^A||"]
)
def test_control_id_is_not_guessed_from_nothing(raw: bytes) -> None:
    assert guess_control_id(raw) == ""


def test_enhanced_mode_codes_and_msh16_rules() -> None:
    assert [commit_code(c) for c in ("AA", "AE", "AR")] == ["CA", "CE", "CR"]
    msg = read_message(fixture_bytes("valid/msconv__LRI_2.0-NG_CBC_Typ_Message.hl7"))  # AL/NE
    assert not wants_application_ack(msg.msh, "AA")
    vxu = read_message(fixture_bytes("valid/msconv__VXU.hl7"))  # ER/AL
    assert wants_application_ack(vxu.msh, "AA")
    iz = read_message(fixture_bytes("valid/msconv__IZ_1_1.1_Admin_Child_Max_Message.hl7"))  # AL/ER
    assert not wants_application_ack(iz.msh, "AA")
    assert wants_application_ack(iz.msh, "AE")
