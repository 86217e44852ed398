"""Checks for what a caller keys in: cards, resident IDs, amounts, numbers.

Each validator takes the keys exactly as typed (digits, and `*` where the
validator gives it a meaning) and returns a `Checked`: either the value to store,
normalised, or the reason it was refused. Validators never raise on caller input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


@dataclass(frozen=True)
class Checked:
    ok: bool
    value: str = ""
    reason: str = ""


def _refuse(reason: str) -> Checked:
    return Checked(False, "", reason)


def luhn_ok(number: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    if not number.isdigit() or len(number) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def check_card(keys: str, lo: int | None = None, hi: int | None = None) -> Checked:
    if not keys.isdigit():
        return _refuse("a card number has digits only")
    if not 12 <= len(keys) <= 19:
        return _refuse("a card number has 12 to 19 digits")
    if not luhn_ok(keys):
        return _refuse("the card number's check digit is wrong")
    return Checked(True, keys)


_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK = "10X98765432"


def resident_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID's first 17 digits."""
    total = sum((ord(c) - 48) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def check_resident_id(keys: str, lo: int | None = None, hi: int | None = None) -> Checked:
    """An 18-character PRC resident ID; the caller keys `*` for the letter X."""
    value = keys.replace("*", "X")
    if len(value) != 18:
        return _refuse("a resident ID has 18 characters")
    body, check = value[:17], value[17]
    if not body.isdigit() or not (check.isdigit() or check == "X"):
        return _refuse("a resident ID has 17 digits then a digit or X")
    try:
        born = dt.date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        return _refuse("the resident ID's date of birth is not a date")
    if born.year < 1850 or born > dt.date.today():
        return _refuse("the resident ID's date of birth is out of range")
    if resident_id_check_char(body) != check:
        return _refuse("the resident ID's check character is wrong")
    return Checked(True, value)


def check_amount(keys: str, lo: int | None = None, hi: int | None = None) -> Checked:
    """An amount of money; `*` is the decimal point, at most two decimals."""
    text = keys.replace("*", ".")
    if text.count(".") > 1 or not text.replace(".", "").isdigit():
        return _refuse("an amount has digits and at most one decimal point")
    whole, _, cents = text.partition(".")
    if len(cents) > 2:
        return _refuse("an amount has at most two decimals")
    if not whole:
        whole = "0"
    try:
        amount = Decimal(f"{whole}.{cents or '0'}")
    except InvalidOperation:
        return _refuse("not an amount")
    if amount <= 0:
        return _refuse("the amount must be more than zero")
    if lo is not None and amount < lo:
        return _refuse(f"the amount must be at least {lo}")
    if hi is not None and amount > hi:
        return _refuse(f"the amount must be at most {hi}")
    return Checked(True, f"{amount.quantize(Decimal('0.01'))}")


def check_digits(keys: str, lo: int | None = None, hi: int | None = None) -> Checked:
    if not keys.isdigit():
        return _refuse("only digits are accepted")
    return Checked(True, keys)


def check_range(keys: str, lo: int | None = None, hi: int | None = None) -> Checked:
    """A whole number between `min_value` and `max_value`, both included."""
    if not keys.isdigit():
        return _refuse("only digits are accepted")
    number = int(keys)
    if lo is not None and number < lo:
        return _refuse(f"the number must be at least {lo}")
    if hi is not None and number > hi:
        return _refuse(f"the number must be at most {hi}")
    return Checked(True, str(number))


Validator = Callable[[str, int | None, int | None], Checked]

VALIDATORS: dict[str, Validator] = {
    "luhn": check_card,
    "cn_resident_id": check_resident_id,
    "amount": check_amount,
    "digits": check_digits,
    "range": check_range,
}
