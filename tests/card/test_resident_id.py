import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from card import resident_id
from card.resident_id import Problem, ResidentIdError, Sex

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "chinese"
TODAY = dt.date(2026, 11, 28)
# stdnum rejects codes created after the birth year; we accept them (see PROVENANCE.md).
DIVERGES_FROM_STDNUM = {"110111198012010078"}


def with_check(first17: str) -> str:
    """Reference MOD 11-2 from the standard's weights, independent of the module."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def parse(value: str) -> resident_id.ResidentId:
    return resident_id.parse(value, today=TODAY)


def problem_of(value: str) -> tuple[Problem, str]:
    with pytest.raises(ResidentIdError) as info:
        parse(value)
    return info.value.problem, str(info.value)


def ric_vectors() -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / "cn_ric_uscc_vectors.json").read_text(encoding="utf-8"))
    cases: list[dict[str, Any]] = data["ric"]
    return cases


@pytest.mark.parametrize("case", ric_vectors(), ids=lambda c: f"{c['function']}-{c['input']}")
def test_public_vectors(case: dict[str, Any]) -> None:
    value, expected = case["input"], case["expected"]
    if "error" in expected and value not in DIVERGES_FROM_STDNUM:
        problem, _ = problem_of(value)
        wanted = {
            "InvalidFormat": {Problem.FORMAT},
            "InvalidChecksum": {Problem.CHECK_DIGIT},
            "InvalidComponent": {
                Problem.BIRTH_DATE_INVALID,
                Problem.REGION_UNKNOWN,
                Problem.REGION_ABOLISHED,
            },
        }[expected["error"]]
        assert problem in wanted
        return
    parsed = parse(value)
    if value in DIVERGES_FROM_STDNUM:
        assert parsed.region_name == "房山区"
        return
    result = expected["result"]
    if case["function"] in ("validate", "format"):
        assert parsed.number == result
    elif case["function"] == "get_birth_date":
        assert parsed.birth_date.isoformat() == result
    elif case["function"] == "get_birth_place":
        assert parsed.province == result["province"]
        assert parsed.region_name == result["county"]


def test_parsed_value_has_region_birth_date_sex_and_normalised_number() -> None:
    number = with_check("51070319800101123")
    parsed = parse(number)
    assert parsed.number == number
    assert parsed.region_code == "510703"
    assert parsed.region_name == "涪城区"
    assert parsed.province == "四川省"
    assert parsed.birth_date == dt.date(1980, 1, 1)
    assert parsed.sequence == "123"
    assert parsed.sex is Sex.MALE
    assert parsed.upgraded_from is None
    assert parse(with_check("51070319800101124")).sex is Sex.FEMALE


def test_lower_and_upper_x_are_the_same() -> None:
    assert parse("44011320141005001x") == parse("44011320141005001X")
    assert parse("44011320141005001x").number.endswith("X")


def test_separators_and_full_width_digits_are_normalised() -> None:
    assert parse("360426 19910101 0071").number == "360426199101010071"
    full_width = "".join(chr(0xFF10 + int(d)) for d in "360426199101010071")
    assert parse(full_width).number == "360426199101010071"


@pytest.mark.parametrize(
    "code",
    ["510703", "510704", "510705", "510722", "510723", "510725", "510726", "510727", "510781"],
)
def test_current_mianyang_codes_are_valid_for_any_birth_year(code: str) -> None:
    for year in (1935, 1980, 2001, 2020):
        assert parse(with_check(f"{code}{year}0615002")).region_code == code


def test_fucheng_code_is_valid_for_someone_born_before_it_existed() -> None:
    # 510703 涪城区 dates from 1992; numbers are issued at 16 or later and kept for life.
    assert parse(with_check("51070319800101002")).region_name == "涪城区"


def test_abolished_code_is_valid_only_for_births_before_abolition() -> None:
    # 510702 市中区 of Mianyang existed 1985-1992, 510724 安县 until 2016 (now 510705).
    assert parse(with_check("51070219850101002")).region_name == "市中区"
    assert parse(with_check("51072420100101002")).region_name == "安县"
    problem, message = problem_of(with_check("51070219950101002"))
    assert problem is Problem.REGION_ABOLISHED
    assert message == "region code 510702 was abolished in 1992, before the birth year 1995"
    assert problem_of(with_check("51072420170101002"))[0] is Problem.REGION_ABOLISHED


def test_pre_1985_prefecture_code_of_mianyang_is_valid_for_older_people() -> None:
    # Before 1985 Mianyang was 绵阳地区 with codes 5128xx (512801 绵阳市).
    assert parse(with_check("51280119500101002")).region_name == "绵阳市"


def test_region_name_is_the_one_in_force_at_birth() -> None:
    # 510726 was 北川县 until 2002, then 北川羌族自治县.
    assert parse(with_check("51072619900101002")).region_name == "北川县"
    assert parse(with_check("51072620100101002")).region_name == "北川羌族自治县"


def test_residence_permit_codes_are_known() -> None:
    assert parse(with_check("83000019900101002")).region_code == "830000"


@pytest.mark.parametrize(
    ("value", "problem", "message"),
    [
        ("", Problem.EMPTY, "resident ID number is empty"),
        ("5107031980010112", Problem.LENGTH, "resident ID number has 16 characters"),
        ("51070319800101123Y", Problem.FORMAT, "'Y' at check character"),
        ("5107031980O101123X", Problem.FORMAT, "'O' at position 11"),
        ("51070X19800101123X", Problem.FORMAT, "'X' at position 6"),
        ("510703199013411230", Problem.BIRTH_DATE_INVALID, "birth date 19901341 is not a date"),
        ("510703199002291230", Problem.BIRTH_DATE_INVALID, "birth date 19900229 is not a date"),
        ("510703202712011230", Problem.BIRTH_DATE_FUTURE, "birth date 20271201 is in the future"),
        ("510703180012011230", Problem.BIRTH_DATE_TOO_EARLY, "before 1850"),
        ("999999198001011230", Problem.REGION_UNKNOWN, "region code 999999 is not a known"),
    ],
)
def test_errors_name_the_exact_problem(value: str, problem: Problem, message: str) -> None:
    got_problem, got_message = problem_of(value)
    assert got_problem is problem
    assert message in got_message


def test_wrong_check_digit_names_the_right_one() -> None:
    good = with_check("51070319800101123")
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    problem, message = problem_of(wrong)
    assert problem is Problem.CHECK_DIGIT
    assert message == f"check digit should be {good[17]}"
    assert problem_of("360426199101010072")[1] == "check digit should be 1"


def test_leap_day_is_a_date() -> None:
    assert parse(with_check("51070320000229002")).birth_date == dt.date(2000, 2, 29)


def test_birth_today_is_allowed_and_tomorrow_is_not() -> None:
    today = with_check("51070320261128002")
    assert parse(today).birth_date == TODAY
    assert problem_of(with_check("51070320261129002"))[0] is Problem.BIRTH_DATE_FUTURE


def test_legacy_15_digit_numbers_are_converted() -> None:
    legacy = "510703800101123"
    parsed = parse(legacy)
    assert parsed.number == with_check("51070319800101123")
    assert parsed.upgraded_from == legacy
    assert resident_id.upgrade_legacy(legacy) == parsed.number


def test_legacy_centenarian_sequence_means_the_1800s() -> None:
    assert resident_id.upgrade_legacy("510703950101996") == with_check("51070318950101996")


def test_legacy_errors() -> None:
    assert problem_of("51070380013112A")[0] is Problem.FORMAT
    problem, message = problem_of("510703801341123")
    assert problem is Problem.BIRTH_DATE_INVALID
    assert message == "birth date 801341 is not a date"
    with pytest.raises(ResidentIdError):
        resident_id.upgrade_legacy("51070380010112")


def test_is_valid() -> None:
    assert resident_id.is_valid("360426199101010071", today=TODAY)
    assert not resident_id.is_valid("360426199101010072", today=TODAY)
    # the same number is not valid before its holder was born
    assert not resident_id.is_valid("360426199101010071", today=dt.date(1990, 1, 1))


def test_every_single_digit_error_is_caught() -> None:
    good = with_check("51070319800101123")
    for i in range(17):
        for d in "0123456789":
            if d == good[i]:
                continue
            assert not resident_id.is_valid(good[:i] + d + good[i + 1 :], today=TODAY)


def test_region_table_is_substantial() -> None:
    table = resident_id.default_regions()
    assert len(table) > 6000
    assert "510703" in table
    assert "990426" not in table
