"""Caller ID to E.164, whatever form the network delivers it in."""

from __future__ import annotations

import functools
import re

import phonenumbers

#: a mainland mobile number, national or with +86, that phonenumbers.parse would take as it
#: is (no carrier code to strip: 179xx, 11xxx and 12xxx are not matched): read directly,
#: since parsing is most of what a new caller costs (tests/bank/test_phones.py checks it)
_PLAIN_MOBILE = re.compile(r"(?:\+86)?(1(?:[3-68]\d|7[0-8]|9\d)\d{8})", re.ASCII)


def _cn_mobile_pattern() -> re.Pattern[str]:
    """phonenumbers' own pattern for mainland mobile numbers: a number that matches it is
    valid, with no need for is_valid_number (which tries every kind of number in turn)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    pattern = metadata.mobile.national_number_pattern if metadata and metadata.mobile else None
    return re.compile(pattern or r"(?!)")  # without it, every number takes the long way


_CN_MOBILE = _cn_mobile_pattern()


@functools.lru_cache(maxsize=65_536)  # callers call again, and a call normalises twice
def normalise_phone(raw: str | None, region: str = "CN") -> str | None:
    """'13812345678', '8613812345678', '008613812345678' and '+8613812345678' all give
    '+8613812345678'. Anonymous, short or unparseable numbers give None."""
    if not raw:
        return None
    digits = raw if raw.isascii() and raw.isdigit() else "".join(
        c for c in raw if c.isdigit() or c == "+")
    if not digits or digits.lower() in ("anonymous", "unknown"):
        return None
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif region == "CN" and digits.startswith("86") and len(digits) == 13:
        digits = "+" + digits
    plain = _PLAIN_MOBILE.fullmatch(digits) if region == "CN" else None
    if plain is not None:
        if _CN_MOBILE.fullmatch(plain.group(1)):
            return "+86" + plain.group(1)
        number = phonenumbers.PhoneNumber(country_code=86, national_number=int(plain.group(1)))
    else:
        try:
            number = phonenumbers.parse(digits, region)
        except phonenumbers.NumberParseException:
            return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
