"""A fault-making TCP proxy between the ISO 8583 client and the switch server.

It reads whole frames both ways and can lose answers, repeat them, hold them and
send them back in reverse order, cut the connection right after forwarding a
request (the switch then works on a request whose answer never arrives), or refuse
connections (the switch is down).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ivr.switch.iso8583 import messages as m


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    prefix = await reader.readexactly(2)
    return await reader.readexactly(int.from_bytes(prefix, "big"))


class WireProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        #: message types of answers that are lost on the way back
        self.lose: set[str] = set()
        #: message types of requests that never reach the switch
        self.block: set[str] = set()
        #: send every answer twice
        self.repeat = False
        #: hold answers until this many are waiting, then send them newest first
        self.hold = 0
        #: after forwarding a request of one of these types, cut the connection (once)
        self.cut_after: set[str] = set()
        #: called with the request after it was forwarded, before any cut
        self.on_request: Callable[[m.Message], None] | None = None
        #: close new connections at once
        self.refuse = False
        #: (direction, message) for everything that passed: "->" to the switch, "<-" back
        self.seen: list[tuple[str, m.Message]] = []
        self._held: list[bytes] = []
        self._mute = False
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Drop every open connection, both sides, at once."""
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def count(self, direction: str, mti: str, code: str | None = None) -> int:
        return sum(1 for d, msg in self.seen
                   if d == direction and msg["t"] == mti and (code is None or msg.get("70") == code))

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._links.update((client_writer, server_writer))
        up = asyncio.create_task(self._pump_requests(client_reader, server_writer, client_writer))
        down = asyncio.create_task(self._pump_answers(server_reader, client_writer))
        self._tasks.update((up, down))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
            self._tasks.discard(task)
        for writer in (client_writer, server_writer):
            writer.transport.abort()
            self._links.discard(writer)

    async def _pump_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                data = await read_frame(reader)
                message = m.decode(data)
                self.seen.append(("->", message))
                if message["t"] in self.block:
                    continue
                writer.write(m.frame(data))
                await writer.drain()
                if self.on_request is not None:
                    self.on_request(message)
                if message["t"] in self.cut_after:
                    # The switch works on it; its answer dies with the connection.
                    self.cut_after.discard(message["t"])
                    self._mute = True
                    for _ in range(100):
                        if any(d == "<-" and msg.get("11") == message["11"] for d, msg in self.seen):
                            break
                        await asyncio.sleep(0.01)
                    self.cut()
                    self._mute = False
                    return

    async def _pump_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                data = await read_frame(reader)
                message = m.decode(data)
                self.seen.append(("<-", message))
                if message["t"] in self.lose or self._mute:
                    continue
                if self.hold and message["t"] != m.NETWORK_RESPONSE:
                    self._held.append(data)
                    if len(self._held) < self.hold:
                        continue
                    batch, self._held = self._held[::-1], []
                else:
                    batch = [data]
                for frame in batch:
                    writer.write(m.frame(frame))
                    if self.repeat:
                        writer.write(m.frame(frame))
                await writer.drain()
