"""The services a call may use, passed to the interpreter (never imported by verbs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ivr.bank.service import Bank
    from ivr.switch.api import Switch


class OutboundError(Exception):
    """A message or call could not be placed; the text says why (no PII in it)."""


class Messenger(Protocol):
    async def send_sms(self, to: str, body: str) -> str:
        """Send `body` to `to` (E.164); the provider's message id. Raises OutboundError."""
        ...


@dataclass(frozen=True)
class Services:
    bank: Bank
    switch: Switch
    #: SMS (Twilio's REST API where configured); None: the `sms` verb fails over
    messenger: Messenger | None = None
