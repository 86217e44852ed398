"""Keeping card numbers, ID numbers and PINs out of the database and the logs.

- `lookup_hash`: a keyed hash (HMAC-SHA256) so a number can be found without
  being stored; the key comes from settings.
- `mask_*`: what may be shown or spoken: the last four of a card, the region and
  last four of an ID.
- `hash_pin` / `verify_pin`: scrypt with a random salt; slow on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def lookup_hash(key: str, kind: str, number: str) -> str:
    """A stable, keyed fingerprint of a number; `kind` keeps card and ID spaces apart."""
    return hmac.new(key.encode(), f"{kind}:{number}".encode(), hashlib.sha256).hexdigest()


def mask_card(pan: str) -> str:
    return f"{pan[:4]} **** **** {pan[-4:]}" if len(pan) >= 12 else "*" * len(pan)


def mask_resident_id(number: str) -> str:
    return f"{number[:4]}{'*' * (len(number) - 8)}{number[-4:]}" if len(number) >= 12 else "*" * len(number)


def mask_phone(number: str) -> str:
    """+8613800000001 -> +86138****0001: enough to tell numbers apart in a log."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:-8] + "****" + number[-4:]


def mask_account(number: str) -> str:
    return f"{'*' * max(len(number) - 4, 0)}{number[-4:]}"


def hash_pin(pin: str, cost: int = 14) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=2**cost, r=8, p=1, dklen=32)
    return f"scrypt${cost}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        scheme, cost, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(pin.encode(), salt=salt, n=2 ** int(cost), r=8, p=1,
                                dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


WEAK_PINS = {"123456", "654321", "012345", "543210", "123123", "112233", "121212", "888888"}


def pin_problem(pin: str) -> str | None:
    """Why a new PIN is refused, or None when it is acceptable."""
    if len(pin) != 6 or not pin.isdigit():
        return "a phone PIN has exactly six digits"
    if len(set(pin)) == 1 or pin in WEAK_PINS:
        return "the PIN is too easy to guess"
    return None
