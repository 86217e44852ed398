"""AMI: originating outbound calls and following queue and hang-up events.

A thin layer over panoramisk's `Manager` (which logs in, pings, and reconnects with
a new login when the connection drops), adding what the engine needs: a URL with
the secret kept out of every message, a timeout on every action (an action caught
by a drop fails instead of hanging), originate with its real outcome (the
`OriginateResponse` event, not just "queued"), and typed events with caller
numbers masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk import Manager  # type: ignore[import-untyped]

log = logging.getLogger("ivr.ami")

EVENTS = ("QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentConnect",
          "AgentComplete", "Hangup")
#: OriginateResponse's Reason (the channel's last control frame) in words
REASONS = {"0": "the call could not be placed (no such number or channel)", "1": "hung up",
           "3": "no answer", "4": "answered", "5": "busy", "8": "congestion (the network refused it)"}
_NUMBER = re.compile(r"\+?\d{3,20}")
_FLOW = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ids = itertools.count(1)


class AmiError(Exception):
    """AMI refused us, or did not answer in time."""


class OriginateFailed(AmiError):
    """The outbound call was not answered or could not be placed."""


@dataclass(frozen=True)
class AmiUrl:
    host: str
    port: int
    username: str
    secret: str = field(repr=False)

    @classmethod
    def parse(cls, url: str) -> AmiUrl:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ami":
            raise ValueError("the AMI URL must look like ami://USER:SECRET@HOST:5038")
        if not parts.username or not parts.password:
            raise ValueError("the AMI URL has no user or secret (ami://USER:SECRET@HOST:5038)")
        try:
            port = parts.port or 5038
        except ValueError:
            raise ValueError("the AMI URL's port is not a number from 1 to 65535") from None
        return cls(parts.hostname or "127.0.0.1", port, urllib.parse.unquote(parts.username),
                   urllib.parse.unquote(parts.password))

    def __str__(self) -> str:
        return f"ami://{self.username}:***@{self.host}:{self.port}"


def mask_number(number: str) -> str:
    digits = number.strip()
    if len(digits) <= 9:
        return "*" * len(digits)
    return digits[:5] + "*" * (len(digits) - 9) + digits[-4:]


@dataclass(frozen=True)
class AmiEvent:
    """A queue or hang-up event, as a supervisor's screen needs it."""

    name: str
    channel: str = ""
    uniqueid: str = ""
    queue: str = ""
    caller: str = ""
    position: int | None = None
    hold_time: int | None = None
    cause: str = ""
    cause_text: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> AmiEvent:
        def number(key: str) -> int | None:
            value = str(message.get(key, "")).strip()
            return int(value) if value.isdigit() else None

        chan_vars = message.get("ChanVariable", [])
        if isinstance(chan_vars, str):
            chan_vars = [chan_vars]
        variables = {}
        for item in chan_vars:
            name, _, value = str(item).partition("=")
            if name.startswith("IVR_"):
                variables[name] = value
        return cls(str(message.get("Event", "")), str(message.get("Channel", "")),
                   str(message.get("Uniqueid", "")), str(message.get("Queue", "")),
                   mask_number(str(message.get("CallerIDNum", ""))),
                   number("Position"), number("HoldTime"), str(message.get("Cause", "")),
                   str(message.get("Cause-txt", "")), variables)

    def describe(self) -> str:
        parts = [self.name, self.channel]
        for label, value in (("queue", self.queue), ("caller", self.caller),
                             ("position", self.position), ("hold", self.hold_time),
                             ("cause", self.cause_text or self.cause)):
            if value not in ("", None):
                parts.append(f"{label}={value}")
        parts += [f"{k}={v}" for k, v in sorted(self.variables.items())]
        return " ".join(parts)


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager, which stops dialling again once closed."""

    closing = False

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.closing:
            return None
        return super().connect(*args, **kwargs)


class Ami:
    def __init__(self, url: AmiUrl, *, channel_template: str = "PJSIP/{number}@trunk",
                 action_timeout: float = 10.0, reconnect: float = 1.0) -> None:
        self.url = url
        self.channel_template = channel_template
        self.action_timeout = action_timeout
        self._listeners: list[tuple[frozenset[str], asyncio.Queue[AmiEvent]]] = []
        self.manager = _Manager(host=url.host, port=url.port, username=url.username,
                               secret=url.secret, reconnect_timeout=reconnect, ping_delay=10,
                               log=logging.getLogger("ivr.ami.wire"))
        for name in EVENTS:
            self.manager.register_event(name, self._event)

    async def connect(self, timeout: float = 5.0) -> None:
        """Connect and log in; AmiError if refused or unreachable."""
        manager = self.manager
        manager.loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(manager.connect(), timeout)
            if not manager._connected:
                raise OSError("connection refused")
            loop = asyncio.get_running_loop()
            until = loop.time() + timeout
            while manager.authenticated_future is not None and loop.time() < until:
                await asyncio.sleep(0.01)
        except (OSError, TimeoutError) as exc:
            await self.close()
            raise AmiError(f"cannot reach AMI at {self.url.host}:{self.url.port}: {exc}") from None
        if not manager.authenticated:
            await self.close()
            raise AmiError(f"AMI login refused for user {self.url.username} at "
                           f"{self.url.host}:{self.url.port}: check manager.conf's secret and permit")
        log.info("AMI: logged in to %s", self.url)

    async def action(self, fields: Mapping[str, str], wait: float = 0.0) -> Any:
        """Send one action and wait for its response, at most `action_timeout` (plus
        `wait`) seconds."""
        if not self.manager.authenticated:
            raise AmiError("AMI is not connected (reconnecting)")
        try:
            response = await asyncio.wait_for(self.manager.send_action(dict(fields)),
                                              self.action_timeout + wait)
        except TimeoutError:
            raise AmiError(f"AMI gave no answer to {fields.get('Action')} in "
                           f"{self.action_timeout:g} s") from None
        return response

    async def originate(self, number: str, flow: str, *, caller_id: str,
                        variables: Mapping[str, str] | None = None, timeout: float = 30.0) -> str:
        """Call `number` and run `flow` when it answers; the channel's Uniqueid."""
        if not _NUMBER.fullmatch(number):
            raise ValueError("the number must be digits, with an optional leading +")
        if not _FLOW.fullmatch(flow):
            raise ValueError("the flow must be a name such as collections")
        pairs = {"IVR_FLOW": flow, **(variables or {})}
        if any(re.search(r"[\r\n,]", f"{k}{v}") for k, v in pairs.items()):
            raise ValueError("variables cannot hold line breaks or commas")
        # panoramisk keeps an async Originate open until its OriginateResponse event
        # and answers with both messages: the wait covers the ringing too.
        answer = await self.action({
            "Action": "Originate", "ActionID": f"ivr-originate-{next(_ids)}",
            "Channel": self.channel_template.format(number=number),
            "Context": "ivr-outbound", "Exten": "s", "Priority": "1", "Async": "true",
            "Timeout": str(int(timeout * 1000)), "CallerID": caller_id,
            "Variable": ",".join(f"{k}={v}" for k, v in pairs.items())}, wait=timeout)
        messages = answer if isinstance(answer, list) else [answer]
        if str(messages[0].get("Response", "")).lower() != "success":
            raise OriginateFailed(f"AMI refused the call: {messages[0].get('Message', '?')}")
        event = next((m for m in messages if m.get("Event") == "OriginateResponse"), None)
        if event is None:
            raise AmiError("AMI queued the call but sent no OriginateResponse")
        if str(event.get("Response", "")).lower() != "success":
            reason = str(event.get("Reason", ""))
            raise OriginateFailed(REASONS.get(reason, f"reason {reason}"))
        log.info("AMI: call to %s answered; flow %s", mask_number(number), flow)
        return str(event.get("Uniqueid", ""))

    def _event(self, manager: Any, message: Mapping[str, Any]) -> None:
        event = AmiEvent.from_message(message)
        for names, queue in self._listeners:
            if not names or event.name in names:
                queue.put_nowait(event)

    async def events(self, *names: str) -> AsyncIterator[AmiEvent]:
        """Typed events, as they come (all of EVENTS when no name is given)."""
        queue: asyncio.Queue[AmiEvent] = asyncio.Queue()
        entry = (frozenset(names), queue)
        self._listeners.append(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners.remove(entry)

    async def close(self) -> None:
        self.manager.closing = True
        with contextlib.suppress(Exception):
            self.manager.close()
