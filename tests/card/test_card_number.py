import pytest

from card import card_number
from card.card_number import CardNumberError, Problem


def test_make_builds_16_digits_with_issuer_series_serial_and_check() -> None:
    number = card_number.make(123)
    assert len(number) == 16
    assert number.startswith("51071")
    assert number[5:15] == "0000000123"
    assert card_number.parse(number) == number


def test_known_check_digits() -> None:
    # Damm's published example: 572 -> check digit 4.
    assert card_number.check_digit("572") == "4"
    body = "510710000000000"
    assert card_number.make(0) == body + card_number.check_digit(body)


def test_separators_are_accepted_and_display_groups_by_four() -> None:
    number = card_number.make(9_876_543_210)
    spaced = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    assert card_number.parse(spaced) == number
    assert card_number.parse(spaced.replace(" ", "-")) == number
    assert card_number.format_display(number) == spaced


def test_every_single_digit_error_and_adjacent_transposition_is_caught() -> None:
    number = card_number.make(4_709_812_356)
    for i in range(16):
        for d in "0123456789":
            if d != number[i]:
                assert not card_number.is_valid(number[:i] + d + number[i + 1 :])
    for i in range(15):
        if number[i] != number[i + 1]:
            swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
            assert not card_number.is_valid(swapped)


@pytest.mark.parametrize(
    ("value", "problem", "message"),
    [
        ("", Problem.EMPTY, "card number is empty"),
        ("5107A00000000001", Problem.FORMAT, "digits only"),
        ("510710000000001", Problem.LENGTH, "has 15 digits, expected 16"),
        ("4107100000000001", Problem.ISSUER, "must start with 5107, not 4107"),
        ("5107200000000001", Problem.SERIES, "card series 2 is not issued"),
    ],
)
def test_errors_name_the_problem(value: str, problem: Problem, message: str) -> None:
    with pytest.raises(CardNumberError) as info:
        card_number.parse(value)
    assert info.value.problem is problem
    assert message in str(info.value)


def test_wrong_check_digit_names_the_right_one() -> None:
    good = card_number.make(42)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    with pytest.raises(CardNumberError, match=f"check digit should be {good[-1]}") as info:
        card_number.parse(bad)
    assert info.value.problem is Problem.CHECK_DIGIT


def test_make_rejects_serials_out_of_range() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        card_number.make(10**10)
    with pytest.raises(ValueError, match="does not fit"):
        card_number.make(-1)
