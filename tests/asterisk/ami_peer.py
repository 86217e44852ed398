"""A stand-in for Asterisk's manager interface (AMI) over a real socket: the banner,
Login, Ping, Originate (queued, then its OriginateResponse event), and events the
test pushes; it can refuse logins and drop connections."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def message(*pairs: tuple[str, str]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in pairs) + b"\r\n"


@dataclass
class AmiPeer:
    username: str = "ivr"
    secret: str = "s3cret-ami"
    #: number -> (Response, Reason) of the OriginateResponse event
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    actions: list[dict[str, str]] = field(default_factory=list)
    logins: int = 0
    answer_actions: bool = True
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop()
        self._server.close()

    def drop(self) -> None:
        """Cut every connection, as a restarting Asterisk does."""
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    def push(self, *pairs: tuple[str, str]) -> None:
        for writer in self.writers:
            writer.write(message(*pairs))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                fields: dict[str, str] = {}
                for line in raw.decode().split("\r\n"):
                    if ": " in line:
                        key, _, value = line.partition(": ")
                        fields[key] = value
                self.actions.append(fields)
                if not await self._act(fields, writer):
                    break
        writer.close()

    async def _act(self, fields: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        action = fields.get("Action", "").lower()
        action_id = fields.get("ActionID", "")
        if action == "login":
            if (fields.get("Username"), fields.get("Secret")) != (self.username, self.secret):
                writer.write(message(("Response", "Error"), ("ActionID", action_id),
                                     ("Message", "Authentication failed")))
                await writer.drain()
                return False
            self.logins += 1
            self.writers.append(writer)
            writer.write(message(("Response", "Success"), ("ActionID", action_id),
                                 ("Message", "Authentication accepted")))
            writer.write(message(("Event", "FullyBooted"), ("Privilege", "system,all"),
                                 ("Status", "Fully Booted")))
            return True
        if not self.answer_actions:
            return True
        if action == "ping":
            writer.write(message(("Response", "Success"), ("ActionID", action_id), ("Ping", "Pong"),
                                 ("Timestamp", "1795870864.000000")))
        elif action == "originate":
            writer.write(message(("Response", "Success"), ("ActionID", action_id),
                                 ("Message", "Originate successfully queued")))
            number = fields.get("Channel", "").split("/")[1].split("@")[0]
            response, reason = self.outcomes.get(number, ("Success", "4"))
            await asyncio.sleep(0.01)
            writer.write(message(("Event", "OriginateResponse"), ("Privilege", "call,all"),
                                 ("ActionID", action_id), ("Response", response),
                                 ("Channel", fields.get("Channel", "")), ("Context", "ivr-outbound"),
                                 ("Exten", "s"), ("Reason", reason), ("Uniqueid", "1795870864.77"),
                                 ("CallerIDNum", "95558"), ("CallerIDName", "<unknown>")))
        else:
            writer.write(message(("Response", "Error"), ("ActionID", action_id),
                                 ("Message", "Invalid/unknown command")))
        return True
