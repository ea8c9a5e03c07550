"""Structure checks: AA / AE / AR with precise reasons."""

from __future__ import annotations

import pytest

from adapters.hl7v2.checks import check_message, supported_types
from adapters.hl7v2.message import read_message
from tests.adapters.hl7v2.hl7_support import fixture_bytes

ADT = fixture_bytes("valid/msconv__ADT-A01-02.hl7")


def verdict(raw: bytes) -> tuple[str, str]:
    v = check_message(read_message(raw))
    return v.decision, v.reason


def test_supported_types_are_the_issues_list() -> None:
    assert supported_types() == sorted(
        [f"ADT^A{n:02d}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 28, 31, 40)]
        + ["ORU^R01", "ORM^O01", "OML^O21", "MDM^T02", "VXU^V04"]
        + [f"SIU^S{n}" for n in (12, 13, 14, 15)]
    )


@pytest.mark.parametrize(
    ("old", "new", "decision", "reason"),
    [
        (b"|P|2.8|", b"|P|2.1|", "AR", "MSH-12: version '2.1' is not supported (2.2 to 2.8)"),
        (b"|P|2.8|", b"|X|2.8|", "AR", "MSH-11: processing id 'X' is not P, T or D"),
        (b"|MSG00001|", b"||", "AR", "MSH-10: message control id is required"),
        (b"ADT^A01^ADT_A01", b"ADT^A99^ADT_A01", "AR", "MSH-9.2: trigger event ADT^A99"),
        (b"ADT^A01^ADT_A01", b"XYZ^A01", "AR", "MSH-9: message type XYZ^A01 is not supported"),
        (b"\rPV1|", b"\rXV1|", "AE", "PV1: required segment PV1 is missing"),
        (b"\rPV1|1|P|", b"\rPV1|1||", "AE", "PV1-2: patient class is required"),
        (
            b"|198808181126+0215|",
            b"|19880230|",
            "AE",
            "PID-7: date/time of birth: '19880230' is not a calendar date",
        ),
    ],
)
def test_decisions(old: bytes, new: bytes, decision: str, reason: str) -> None:
    assert old in ADT
    got_decision, got_reason = verdict(ADT.replace(old, new, 1))
    assert got_decision == decision
    assert got_reason.startswith(reason)


def test_standard_required_parts_the_mapping_can_do_without_are_warnings() -> None:
    decision, reason = verdict(fixture_bytes("valid/msconv__ADT04-251.hl7"))
    assert decision == "AA"
    assert reason == "EVN: segment EVN is missing (required by the standard)"


def test_second_msh_in_one_frame_is_a_content_error() -> None:
    decision, reason = verdict(ADT + ADT)
    assert decision == "AE"
    assert "a second MSH" in reason


def test_versions_22_to_28_are_accepted() -> None:
    for version in (
        "2.2",
        "2.3",
        "2.3.1",
        "2.4",
        "2.5",
        "2.5.1",
        "2.6",
        "2.7",
        "2.7.1",
        "2.8",
        "2.8.2",
    ):
        decision, reason = verdict(ADT.replace(b"|P|2.8|", f"|P|{version}|".encode(), 1))
        assert decision == "AA", (version, reason)


@pytest.mark.parametrize(
    ("obx", "reason"),
    [
        ("OBX|1|NM|HGB^Hb^L||abc|g/L", "OBX-5: observation value (NM) 'abc' is not a number"),
        ("OBX|1|SN|T^t^L||>^x|", "OBX-5: observation value (SN) 'x' is not a number"),
        (
            "OBX|1|DT|D^d^L||20240231|",
            "OBX-5: observation value (DT): '20240231' is not a calendar date",
        ),
    ],
)
def test_observation_values_the_mapping_reads_are_checked(obx: str, reason: str) -> None:
    oru = (
        "MSH|^~\\&|LIS|F|||20240101||ORU^R01|1|P|2.5\r"
        "PID|1||M1^^^^MR||Doe^Jane\r"
        "OBR|1||F1|CBC^CBC^L\r"
        f"{obx}\r"
    )
    decision, got = verdict(oru.encode())
    assert decision == "AE"
    assert got.startswith(reason)
