"""Caller IDs to E.164: the shortcut for plain mainland mobile numbers must give what
phonenumbers gives."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from ivr.bank.phones import _PLAIN_MOBILE, normalise_phone


def test_plain_mobile_numbers_read_directly_are_what_phonenumbers_parses() -> None:
    chance = random.Random(4)
    checked = 0
    for prefix in range(10000, 20000):  # every five-digit start, valid or not
        for _ in range(2):
            national = f"{prefix}{chance.randrange(10**6):06d}"
            for digits in (national, f"+86{national}"):
                if _PLAIN_MOBILE.fullmatch(digits) is None:
                    continue
                checked += 1
                parsed = phonenumbers.parse(digits, "CN")
                assert parsed == phonenumbers.PhoneNumber(country_code=86, national_number=int(national))
                valid = phonenumbers.is_valid_number(parsed)
                assert normalise_phone.__wrapped__(digits) == (f"+86{national}" if valid else None)
    assert checked > 20_000


@pytest.mark.parametrize(("raw", "expected"), [
    ("13812345678", "+8613812345678"), ("8613812345678", "+8613812345678"),
    ("008613812345678", "+8613812345678"), ("+86 138-1234-5678", "+8613812345678"),
    ("17951 13812345678", "+8613812345678"),  # a carrier code first: parsed the long way
    ("1381234567", None), ("138123456789", None), ("anonymous", None), ("", None),
    ("+14155550123", "+14155550123"), ("01012345678", "+861012345678"),
])
def test_caller_ids_in_the_forms_networks_send(raw: str, expected: str | None) -> None:
    assert normalise_phone.__wrapped__(raw) == expected
