from __future__ import annotations

import pytest

from ivr.engine.validators import (
    check_amount,
    check_card,
    check_range,
    check_resident_id,
    luhn_ok,
    resident_id_check_char,
)

# Published test numbers: card networks' documented test PANs, and the worked
# example of GB 11643-1999 (the resident ID standard).
VALID_CARDS = ["4111111111111111", "5500000000000004", "340000000000009", "6011000000000004",
               "4012888888881881", "6250941006528599", "79927398713"]
INVALID_CARDS = ["4111111111111112", "5500000000000005", "1234567812345678", "79927398710"]


@pytest.mark.parametrize("number", VALID_CARDS)
def test_luhn_accepts_published_numbers(number: str) -> None:
    assert luhn_ok(number)


@pytest.mark.parametrize("number", INVALID_CARDS)
def test_luhn_refuses_a_wrong_check_digit(number: str) -> None:
    assert not luhn_ok(number)


def test_card_needs_plausible_length_and_digits() -> None:
    assert check_card("4111111111111111").ok
    assert check_card("79927398713").reason == "a card number has 12 to 19 digits"
    assert check_card("41111111*1111111").reason == "a card number has digits only"
    assert check_card("4111111111111112").reason == "the card number's check digit is wrong"


def test_resident_id_standard_example_with_x_keyed_as_star() -> None:
    assert resident_id_check_char("11010519491231002") == "X"
    checked = check_resident_id("11010519491231002*")
    assert checked.ok and checked.value == "11010519491231002X"


@pytest.mark.parametrize("rid", ["11010519491231002X", "440524188001010014"])
def test_resident_id_published_examples_are_valid(rid: str) -> None:
    assert check_resident_id(rid.replace("X", "*")).ok


@pytest.mark.parametrize("rid", ["110105194912310021", "440524188001010015", "440524188001010114"])
def test_resident_id_with_one_character_changed_is_refused(rid: str) -> None:
    assert check_resident_id(rid).reason == "the resident ID's check character is wrong"


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ("1101051949123100", "a resident ID has 18 characters"),
        ("11010519491331002*", "the resident ID's date of birth is not a date"),
        ("1101051949123100*2", "a resident ID has 17 digits then a digit or X"),
        ("110105194912310029", "the resident ID's check character is wrong"),
        ("110105180012310020", "the resident ID's date of birth is out of range"),
        ("110105299912310020", "the resident ID's date of birth is out of range"),
    ],
)
def test_resident_id_refusals_say_why(keys: str, reason: str) -> None:
    checked = check_resident_id(keys)
    assert not checked.ok
    assert checked.reason == reason


@pytest.mark.parametrize(
    ("keys", "value"),
    [("100", "100.00"), ("100*5", "100.50"), ("0*3", "0.30"), ("*25", "0.25"), ("00012*07", "12.07")],
)
def test_amount_star_is_the_decimal_point(keys: str, value: str) -> None:
    checked = check_amount(keys)
    assert checked.ok and checked.value == value


@pytest.mark.parametrize(
    ("keys", "reason"),
    [("1*2*3", "an amount has digits and at most one decimal point"),
     ("1*234", "an amount has at most two decimals"),
     ("0", "the amount must be more than zero"),
     ("*", "an amount has digits and at most one decimal point"),
     ("12#", "an amount has digits and at most one decimal point")],
)
def test_amount_refusals(keys: str, reason: str) -> None:
    assert check_amount(keys).reason == reason


def test_amount_bounds() -> None:
    assert check_amount("50000", None, 50000).ok
    assert check_amount("50000*01", None, 50000).reason == "the amount must be at most 50000"


def test_range() -> None:
    assert check_range("7", 1, 9).value == "7"
    assert check_range("0", 1, 9).reason == "the number must be at least 1"
    assert check_range("10", 1, 9).reason == "the number must be at most 9"
    assert not check_range("*", 1, 9).ok
