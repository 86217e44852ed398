"""The services a call may use, passed to the interpreter (never imported by verbs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.bank.service import Bank
    from ivr.switch.api import Switch


@dataclass(frozen=True)
class Services:
    bank: Bank
    switch: Switch
