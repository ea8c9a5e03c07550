"""The fast reader: delimiters, escapes, repetitions, components, character sets."""

from __future__ import annotations

import pytest

from adapters.hl7v2.message import (
    STANDARD,
    CharsetError,
    Delimiters,
    UnreadableMessage,
    escape,
    parse_text,
    peek_header,
    read_message,
    unescape,
)
from tests.adapters.hl7v2.hl7_support import fixture_bytes

ADT = (
    "MSH|^~\\&|HIS|MYH|HIE|HIE|20240102030405||ADT^A01^ADT_A01|C1|P|2.5||||||{charset}\r"
    "EVN|A01|20240102030405\r"
    "PID|1||M1^^^MYH^MR~110101199003077777^^^^NNCHN||张^三||19900307|M\r"
    "PV1|1|I\r"
    "ZPI|custom|segment\r"
)


def test_fields_components_repetitions_and_subcomponents() -> None:
    msg = read_message(fixture_bytes("valid/pyhl7__rep_sample_hl7.hl7"))
    pid = msg.first("PID")
    assert pid is not None
    assert pid[1].text == "Field1"
    assert pid[2].components() == ["Component1", "Component2"]
    assert pid[3][2] == "Sub-Component1"
    assert pid[3].subs(2) == ["Sub-Component1", "Sub-Component2"]
    assert pid[3][3] == "Component3"
    assert [r.text for r in pid.reps(4)] == ["Repeat1", "Repeat2"]
    assert pid[4].text == "Repeat1"  # a field reads as its first repetition


def test_msh_numbering_and_header_fields() -> None:
    msg = read_message(fixture_bytes("valid/msconv__ADT-A01-01.hl7"))
    msh = msg.msh
    assert msh[1].text == "|"
    assert msh[2].text == "^~\\&"
    assert msg.sending_application == "ADTApp"
    assert msg.sending_facility == "GHHSFacility"
    assert msg.control_id == "MSG00001"
    assert msg.message_type == "ADT^A01"
    assert msg.version == "2.8"


def test_non_standard_delimiters_from_msh() -> None:
    # Field separator "^", component "~", repetition "|" (HAPI's segment finder sample).
    msg = read_message(fixture_bytes("valid/hapi__segmentfinder_a24_custom_delimiters.hl7"))
    assert msg.delimiters == Delimiters("^", "~", "|", "\\", "&")
    assert msg.message_type == "ADT^A24"
    assert msg.control_id == "2003582144"
    pids = msg.all("PID")
    assert [p[3][1] for p in pids] == ["11111", "22222"]
    assert pids[0][3].sub(4, 3) == "0363"
    assert pids[0][5].components() == ["SMITH", "JOHN", "TEST"]


def test_truncation_character_of_v27() -> None:
    msg = read_message(fixture_bytes("valid/hl7apy__RSP_K22_v27_truncation_char.hl7"))
    assert msg.delimiters.truncation == "#"
    assert msg.delimiters.encoding_characters == "^~\\&#"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A\\F\\B", "A|B"),
        ("A\\S\\B\\T\\C\\R\\D\\E\\", "A^B&C~D\\"),
        ("\\X41\\\\X42\\", "AB"),
        ("line1\\.br\\line2", "line1\nline2"),
        ("\\H\\bold\\N\\", "bold"),
        ("trailing\\", "trailing\\"),
        ("\\Zlocal\\x", "x"),
        ("\\Q\\", "\\Q\\"),
    ],
)
def test_escape_sequences(raw: str, expected: str) -> None:
    assert unescape(raw, STANDARD) == expected


def test_hex_escape_uses_the_message_charset() -> None:
    # 张 in GB18030 is D5C5; in UTF-8 E5BCA0.
    assert unescape("\\XD5C5\\", STANDARD, "gb18030") == "张"
    assert unescape("\\XE5BCA0\\", STANDARD, "utf-8") == "张"


def test_escape_roundtrip_with_custom_delimiters() -> None:
    d = Delimiters("^", "~", "|", "\\", "&")
    text = "a^b~c|d&e\\f\ng"
    assert unescape(escape(text, d), d) == text


def test_escaped_delimiters_in_values_stay_in_one_field() -> None:
    msg = parse_text("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rNTE|1||x \\F\\ y \\S\\ z\r")
    nte = msg.first("NTE")
    assert nte is not None
    assert nte[3].text == "x | y ^ z"
    assert len(nte.fields) == 4


def test_gb18030_without_msh18_uses_the_sender_default() -> None:
    # 億 is 83 7C and 嘰 is 87 5C in GBK: trail bytes equal to "|" and "\\", so the
    # message must be decoded before it is split.
    raw = ADT.format(charset="").replace("张^三", "张億^嘰三").encode("gb18030")
    assert b"\x83|" in raw
    assert b"\x87\\" in raw
    msg = read_message(raw, "GB18030")
    pid = msg.first("PID")
    assert pid is not None
    assert pid[5].components() == ["张億", "嘰三"]
    assert pid[7].text == "19900307"
    assert msg.charset == "gb18030"


def test_msh18_wins_over_the_sender_default() -> None:
    raw = ADT.format(charset="UNICODE UTF-8").encode("utf-8")
    msg = read_message(raw, "GB18030")
    assert msg.charset == "utf-8"
    assert msg.first("PID")[5][1] == "张"  # type: ignore[index]


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("GB 18030-2000", "gb18030"),
        ("GB2312", "gb18030"),
        ("8859/1", "iso8859-1"),
        ("ASCII", "ascii"),
    ],
)
def test_msh18_labels(label: str, codec: str) -> None:
    text = ADT.format(charset=label).replace("张^三", "Zhang^San")
    msg = read_message(text.encode("latin-1"), "UTF-8")
    assert msg.charset == codec


def test_latin1_message_decodes() -> None:
    msg = read_message(fixture_bytes("valid/hapi__cv.04_001_chem.hl7"), "UTF-8")
    assert msg.charset == "iso8859-1"


def test_undecodable_bytes_name_the_charset_and_offset() -> None:
    raw = ADT.format(charset="UNICODE UTF-8").encode("gb18030")
    with pytest.raises(CharsetError) as info:
        read_message(raw, "GB18030")
    assert "utf-8" in info.value.reason
    assert "MSH-18" in info.value.reason
    assert info.value.code == 102


def test_unknown_charset_is_refused() -> None:
    raw = ADT.format(charset="EBCDIC-XX").encode("ascii", "replace")
    with pytest.raises(CharsetError) as info:
        read_message(raw, "UTF-8")
    assert info.value.code == 103


def test_auto_charset_prefers_utf8_then_gb18030() -> None:
    utf8 = read_message(ADT.format(charset="").encode("utf-8"), "AUTO")
    gb = read_message(ADT.format(charset="").encode("gb18030"), "AUTO")
    assert (utf8.charset, gb.charset) == ("utf-8", "gb18030")
    assert utf8.first("PID")[5].text == gb.first("PID")[5].text == "张^三"  # type: ignore[index]


def test_z_segments_are_kept_as_segments() -> None:
    msg = read_message(ADT.format(charset="").encode("utf-8"))
    assert [s.name for s in msg.segments][-1] == "ZPI"


def test_lf_and_crlf_segment_separators_are_tolerated() -> None:
    text = ADT.format(charset="").replace("\r", "\r\n")
    assert [s.name for s in read_message(text.encode()).segments] == [
        "MSH",
        "EVN",
        "PID",
        "PV1",
        "ZPI",
    ]


def test_hl7_null_reads_empty_but_is_distinguishable() -> None:
    msg = read_message(fixture_bytes("valid/pyhl7__sample_msh.hl7"))
    pv1 = msg.first("PV1")
    assert pv1 is not None
    assert pv1.raw(9) == '""'
    assert pv1[9].is_null
    assert pv1[9].text == ""
    assert not pv1.has(9)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", 100),
        (b"PID|1||x\r", 100),
        (b"MSHH0\r", 102),
        (b"MSH|^~\\|A|B\r", 102),
        (b"MSH|^&&^|A|B\r", 102),
        (b"MSH|@%\\&$?!|||\r", 102),
        (b"BHS|^~\\&|A\rMSH|^~\\&|A\r", 100),
    ],
)
def test_unreadable_headers(raw: bytes, code: int) -> None:
    with pytest.raises(UnreadableMessage) as info:
        read_message(raw)
    assert info.value.code == code


def test_peek_header_reads_sender_and_control_id_before_decoding() -> None:
    raw = ADT.format(charset="").encode("gb18030")
    header = peek_header(raw)
    assert (header.sending_application, header.sending_facility) == ("HIS", "MYH")
    assert header.control_id == "C1"
    assert header.msh18 == ""
