"""A stand-in for Asterisk 22's manager interface (AMI) over a real TCP socket.

It speaks the wire format: the ``Asterisk Call Manager/<version>`` banner, ``\\r\\n``
lines, a blank line ending each message. It answers Login (then sends FullyBooted),
Ping, Logoff, and Originate with Async (``Originate successfully queued``, then an
``OriginateResponse`` event with the same ActionID whose outcome each number can
script). Tests push events, drop connections, refuse logins, make it go silent, and
read back every action received.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

#: AMI_VERSION in Asterisk 22's main/manager.c
AMI_VERSION = "11.0.0"
BANNER = f"Asterisk Call Manager/{AMI_VERSION}\r\n".encode()

Headers = list[tuple[str, str]]


def encode(headers: Headers) -> bytes:
    return b"".join(f"{key}: {value}\r\n".encode() for key, value in headers) + b"\r\n"


def parse(raw: bytes) -> dict[str, str | list[str]]:
    """One message's headers; a repeated header (Variable, ChanVariable) as a list."""
    fields: dict[str, str | list[str]] = {}
    for line in raw.decode().split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        if key in fields:
            before = fields[key]
            fields[key] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            fields[key] = value
    return fields


@dataclass
class Outcome:
    """How an originated call to one number ends."""

    response: str = "Success"  # or Failure
    reason: str = "4"  # 4 answered, 0 failed, 1 hung up, 3 no answer, 5 busy, 8 congestion
    delay: float = 0.01  # seconds of "ringing" before the OriginateResponse
    respond: bool = True  # False: queue the call and never say how it ended
    #: a call failing at once: its OriginateResponse overtakes the "queued" answer
    before_ack: bool = False


@dataclass
class AmiPeer:
    username: str = "ivr"
    secret: str = "s3cret-ami"
    #: number dialled (from Channel: PJSIP/<number>@trunk) -> its outcome; others are answered
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    #: events sent to each session right after FullyBooted
    after_login: list[Headers] = field(default_factory=list)
    refuse_logins: bool = False
    #: False: read actions but answer none (a hung Asterisk, a half-open link)
    answering: bool = True
    actions: list[dict[str, str | list[str]]] = field(default_factory=list)
    logins: int = 0
    refused: int = 0
    port: int = 0
    _sessions: list[asyncio.StreamWriter] = field(default_factory=list)
    _uniqueids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> AmiPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.drop()
        self._server.close()
        await self._server.wait_closed()

    # -- test hooks --------------------------------------------------------------------

    def push(self, *headers: tuple[str, str]) -> None:
        """An event to every logged-in session."""
        for writer in self._sessions:
            writer.write(encode(list(headers)))

    def drop(self) -> None:
        """Cut every connection, as a restarting Asterisk does."""
        for writer in self._sessions:
            writer.close()
        self._sessions.clear()

    def received(self, action: str) -> list[dict[str, str | list[str]]]:
        return [a for a in self.actions if str(a.get("Action", "")).lower() == action.lower()]

    async def wait_for_logins(self, count: int, timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while self.logins < count:
                await asyncio.sleep(0.01)

    # -- the protocol ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while True:
                    fields = parse(await reader.readuntil(b"\r\n\r\n"))
                    self.actions.append(fields)
                    if not await self._act(fields, writer):
                        break
        finally:
            if writer in self._sessions:
                self._sessions.remove(writer)
            writer.close()

    async def _act(self, fields: dict[str, str | list[str]], writer: asyncio.StreamWriter) -> bool:
        action = str(fields.get("Action", "")).lower()
        action_id = str(fields.get("ActionID", ""))

        def reply(*headers: tuple[str, str]) -> None:
            writer.write(encode([headers[0], ("ActionID", action_id), *headers[1:]]))

        if action == "login":
            if self.refuse_logins or (fields.get("Username"), fields.get("Secret")) != (
                    self.username, self.secret):
                self.refused += 1
                reply(("Response", "Error"), ("Message", "Authentication failed"))
                await writer.drain()
                return False  # Asterisk ends the session after a failed login
            self.logins += 1
            self._sessions.append(writer)
            reply(("Response", "Success"), ("Message", "Authentication accepted"))
            writer.write(encode([("Event", "FullyBooted"), ("Privilege", "system,all"),
                                 ("Uptime", "1234"), ("LastReload", "1234"), ("Status", "Fully Booted")]))
            for event in self.after_login:
                writer.write(encode(event))
            return True
        if writer not in self._sessions:
            reply(("Response", "Error"), ("Message", "Permission denied"))
            return True
        if not self.answering:
            return True
        if action == "ping":
            reply(("Response", "Success"), ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}"))
        elif action == "logoff":
            reply(("Response", "Goodbye"), ("Message", "Thanks for all the fish."))
            await writer.drain()
            return False
        elif action == "originate":
            number = str(fields.get("Channel", "")).partition("/")[2].partition("@")[0]
            outcome = self.outcomes.get(number, Outcome())
            uniqueid = f"1795870864.{next(self._uniqueids)}"
            if outcome.respond and outcome.before_ack:
                self._originate_response(writer, fields, outcome, uniqueid)
            reply(("Response", "Success"), ("Message", "Originate successfully queued"))
            if outcome.respond and not outcome.before_ack:
                asyncio.get_running_loop().call_later(outcome.delay, self._originate_response, writer,
                                                      fields, outcome, uniqueid)
        else:
            reply(("Response", "Error"), ("Message", "Invalid/unknown command"))
        return True

    def _originate_response(self, writer: asyncio.StreamWriter, fields: dict[str, str | list[str]],
                            outcome: Outcome, uniqueid: str) -> None:
        if writer.is_closing():
            return
        writer.write(encode([
            ("Event", "OriginateResponse"), ("Privilege", "call,all"),
            ("ActionID", str(fields.get("ActionID", ""))), ("Response", outcome.response),
            ("Channel", str(fields.get("Channel", ""))), ("Context", str(fields.get("Context", ""))),
            ("Exten", str(fields.get("Exten", ""))), ("Application", ""), ("Data", ""),
            ("Reason", outcome.reason),
            ("Uniqueid", uniqueid if outcome.response == "Success" else "<null>"),
            ("CallerIDNum", "<unknown>"), ("CallerIDName", "<unknown>")]))
