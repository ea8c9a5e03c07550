import pytest

from hie.crypto import mask_name, mask_phone, mask_resident_id
from hie.crypto.normalise import phone


def test_resident_id_mask_keeps_region_and_last_four() -> None:
    assert mask_resident_id("510703198001011234") == "510703********1234"
    assert mask_resident_id("44011320141005001x") == "440113********001X"
    assert mask_resident_id("510703800101123") == "510703*****1123"
    assert mask_resident_id("12345") == "*****"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+86 138 1234 5678", "138****5678"),
        ("0816-2345678", "*******5678"),
        ("123", "***"),
    ],
)
def test_phone_mask(raw: str, masked: str) -> None:
    assert mask_phone(raw) == masked


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("+86 138-1234-5678", "13812345678"),
        ("008613812345678", "13812345678"),
        ("(0816) 234 5678", "08162345678"),
        ("+86 816 2345678", "08162345678"),
        ("8623456", "8623456"),
    ],
)
def test_phone_normalisation(raw: str, canonical: str) -> None:
    assert phone(raw) == canonical


def test_name_mask() -> None:
    assert mask_name("张伟") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("ZHANG WEI") == "Z**** W**"
    assert mask_name("") == ""
