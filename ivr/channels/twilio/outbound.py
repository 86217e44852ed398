"""SMS and outbound calls through Twilio's REST API, for flows (the `sms` verb) and
campaigns.

The `twilio` client is synchronous; each request runs in a worker thread. A refusal
(4xx: a bad number, an unverified number on a trial account, ...) is reported at
once with Twilio's code and message (numbers in it masked). Throttling (429),
Twilio being unavailable (503) and connections that never reached Twilio are
tried again, with growing pauses, up to `attempts` times. Anything else after the
request left (another 5xx, a lost answer) may have been carried out; Twilio's API
has no idempotency key for messages, so those are reported, not retried.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ivr.bank.secrets import mask_phone
from ivr.config import Settings
from ivr.engine.services import OutboundError

log = logging.getLogger("ivr.twilio.outbound")

#: answers that mean the request was not carried out: throttled, or Twilio unavailable
RETRYABLE = (429, 503)


@dataclass(frozen=True)
class Placed:
    sid: str
    status: str


class TwilioOutbound:
    def __init__(self, account_sid: str, auth_token: str, from_number: str, *,
                 base_url: str | None = None, attempts: int = 3, pause: float = 0.5,
                 timeout: float = 10.0) -> None:
        if not (account_sid and auth_token and from_number):
            raise OutboundError("sending SMS and placing calls need TWILIO_ACCOUNT_SID, "
                                "TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER")
        self.client = Client(account_sid, auth_token,
                             http_client=TwilioHttpClient(timeout=timeout))
        if base_url:
            self.client.api.base_url = base_url.rstrip("/")
        self.from_number = from_number
        self.attempts = attempts
        self.pause = pause

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str | None = None) -> TwilioOutbound:
        return cls(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value(),
                   settings.twilio_from_number, base_url=base_url)

    async def send_sms(self, to: str, body: str) -> str:
        placed = await self._create("SMS", self.client.messages.create,
                                    to=to, from_=self.from_number, body=body)
        return placed.sid

    async def place_call(self, to: str, url: str, status_callback: str | None = None) -> Placed:
        """Call `to`; when answered, Twilio asks `url` (our /twilio/voice) what to play."""
        extra: dict[str, Any] = {"status_callback": status_callback} if status_callback else {}
        return await self._create("call", self.client.calls.create,
                                  to=to, from_=self.from_number, url=url, **extra)

    async def _create(self, what: str, create: Any, **values: Any) -> Placed:
        shown = mask_phone(str(values["to"]))
        for attempt in range(1, self.attempts + 1):
            try:
                made = await asyncio.to_thread(create, **values)
            except TwilioRestException as exc:
                if exc.status not in RETRYABLE:
                    verdict = ("refused" if exc.status < 500
                               else "failed (it may have been sent, so it is not sent again)")
                    raise OutboundError(f"Twilio {verdict} the {what} to {shown}: error {exc.code} "
                                        f"({exc.status}): {_reason(exc)}") from None
                problem = f"Twilio answered {exc.status}"
            except requests.ConnectionError as exc:
                if not _never_sent(exc):
                    raise OutboundError(f"the connection to Twilio broke during the {what} to "
                                        f"{shown}; it may have been sent, so it is not sent "
                                        "again") from None
                problem = f"cannot reach Twilio ({type(exc).__name__})"
            except requests.Timeout:
                raise OutboundError(f"no answer from Twilio for the {what} to {shown}; it may "
                                    "have been sent, so it is not sent again") from None
            except (requests.RequestException, TwilioException) as exc:
                raise OutboundError(f"the {what} to {shown} failed ({type(exc).__name__}); it "
                                    "may have been sent, so it is not sent again") from None
            else:
                log.info("%s to %s placed: %s", what, shown, made.sid)
                return Placed(str(made.sid), str(made.status))
            if attempt == self.attempts:
                raise OutboundError(f"the {what} to {shown} failed {attempt} times: {problem}")
            log.warning("%s to %s: %s; trying again", what, shown, problem)
            await asyncio.sleep(self.pause * 2 ** (attempt - 1))
        raise AssertionError("unreachable")


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Whether the request failed before it reached Twilio (no connection was made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _reason(exc: TwilioRestException) -> str:
    """Twilio's message, with any phone number in it masked (it echoes the 'To')."""
    message = str(exc.msg or "").removeprefix("Unable to create record: ")
    return re.sub(r"\+?\d{6,}", lambda found: mask_phone(found.group()), message)
