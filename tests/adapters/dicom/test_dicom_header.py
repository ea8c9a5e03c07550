from __future__ import annotations

import pytest

from adapters.dicom.files import file_meta_bytes
from adapters.dicom.header import DatasetMismatch, MalformedDataset, check_complete, read_header
from tests.adapters.dicom.dicom_support import FIXTURES, VALID, file_info, split_part10


def header_of(path):  # type: ignore[no-untyped-def]
    sop_class, sop, ts, _, body = file_info(path)
    return read_header(file_meta_bytes(sop_class, sop, ts, "X"), body, ts)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_valid_file_is_complete_and_has_a_header(path) -> None:  # type: ignore[no-untyped-def]
    header = header_of(path)
    assert header.sop_instance_uid == file_info(path)[1]


def test_character_sets() -> None:
    x1 = header_of(FIXTURES / "charset" / "chrX1.dcm")
    x2 = header_of(FIXTURES / "charset" / "chrX2.dcm")
    assert (x1.name_alphabetic, x1.name_ideographic) == ("Wang^XiaoDong", "王^小東")
    assert (x2.name_alphabetic, x2.name_ideographic) == ("Wang^XiaoDong", "王^小东")
    assert header_of(FIXTURES / "charset" / "chrFren.dcm").patient_name == "Buc^Jérôme"
    assert header_of(FIXTURES / "charset" / "chrH31.dcm").name_ideographic == "山田^太郎"


def test_times_are_normalised_for_range_matching() -> None:
    assert header_of(FIXTURES / "valid" / "CT_small.dcm").study_time == "072730"


@pytest.mark.parametrize(
    "name",
    ["MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm", "badVR.dcm"],
)
def test_malformed_files(name: str) -> None:
    with pytest.raises(MalformedDataset) as info:
        header_of(FIXTURES / "malformed" / name)
    assert info.value.status == 0xC000
    assert len(info.value.comment) <= 64


def test_missing_uids_are_a_mismatch() -> None:
    _meta, body = split_part10((FIXTURES / "charset" / "chrSQEncoding.dcm").read_bytes())
    ts = "1.2.840.10008.1.2.1"
    with pytest.raises(DatasetMismatch):
        read_header(file_meta_bytes("1.2.3", "1.2.3.4", ts, "X"), body, ts)


def test_every_truncation_is_caught() -> None:
    _, _, ts, _, body = file_info(FIXTURES / "valid" / "MR_small_RLE.dcm")
    boundaries = 0
    for cut in range(1, len(body), 37):
        try:
            check_complete(body[:cut], ts)
            boundaries += 1  # the cut fell exactly between two elements
        except MalformedDataset:
            pass
    assert boundaries < 10
    check_complete(body, ts)


def test_unknown_transfer_syntax() -> None:
    with pytest.raises(MalformedDataset):
        check_complete(b"", "1.2.3.4")
