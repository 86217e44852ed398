"""Caller ID to E.164, whatever form the network delivers it in."""

from __future__ import annotations

import functools

import phonenumbers


@functools.lru_cache(maxsize=65_536)  # callers call again, and a call normalises twice
def normalise_phone(raw: str | None, region: str = "CN") -> str | None:
    """'13812345678', '8613812345678', '008613812345678' and '+8613812345678' all give
    '+8613812345678'. Anonymous, short or unparseable numbers give None."""
    if not raw:
        return None
    digits = "".join(c for c in raw if c.isdigit() or c == "+")
    if not digits or digits.lower() in ("anonymous", "unknown"):
        return None
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif region == "CN" and digits.startswith("86") and len(digits) == 13:
        digits = "+" + digits
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
