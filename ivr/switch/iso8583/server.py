"""`ivr switch serve`: the embedded ledger behind ISO 8583 over TCP.

Each connection is read frame by frame; every request is served in a task of its
own, so a slow request does not hold up the others and answers go back in the
order they are ready (the client matches them by STAN). A retransmitted request
carries the same idempotency key and gets the first answer; reversals are
idempotent too. A frame that cannot be read is answered with response code 30
where its type can be read, and otherwise ends the connection; either way the
ledger is not touched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ivr.switch import api
from ivr.switch.iso8583 import messages as m
from ivr.switch.ledger import Reversal

log = logging.getLogger("ivr.switch.server")


class Ledger(Protocol):
    async def execute(self, request: api.Request) -> api.Result: ...

    async def reverse(self, idempotency_key: str) -> Reversal: ...


class SwitchServer:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._requests: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 8583) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve_connection, host, port)
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop accepting, let requests in progress finish (up to `deadline` s), then close."""
        if self._server is not None:
            self._server.close()
        if self._requests:
            _, late = await asyncio.wait(self._requests, timeout=deadline)
            if late:
                log.warning("%d requests still running after %.0f s; stopping anyway",
                            len(late), deadline)
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        log.info("switch connection from %s", peer)
        try:
            await self._read_frames(reader, writer, peer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            log.info("switch connection from %s closed", peer)

    async def _read_frames(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           peer: object) -> None:
        while True:
            try:
                prefix = await reader.readexactly(2)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    log.warning("%s: connection closed inside a frame length", peer)
                return
            try:
                length = m.frame_length(prefix)
                data = await reader.readexactly(length)
            except m.WireError as exc:
                log.warning("%s: %s; closing the connection", peer, exc)
                return
            except asyncio.IncompleteReadError as exc:
                log.warning("%s: truncated message (%d of %d bytes); closing the connection",
                            peer, len(exc.partial), length)
                return
            try:
                message = m.decode(data)
            except m.WireError as exc:
                mti = m.readable_type(data)
                if mti is None:
                    log.warning("%s: %s; closing the connection", peer, exc)
                    return
                log.warning("%s: %s; answered with format error", peer, exc)
                self._send(writer, {"t": m.response_mti(mti), "39": m.FORMAT_ERROR})
                continue
            if message["t"] not in m.REQUESTS:
                if int(message["t"][2]) % 2 == 0:  # a request or advice of a class we do not serve
                    log.warning("%s: message type %s is not served", peer, message["t"])
                    self._send(writer, m.refusal(message, m.INVALID_TRANSACTION))
                else:
                    log.warning("%s: unexpected %s ignored", peer, m.describe(message))
                continue
            task = asyncio.create_task(self._answer(message, writer))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    def _send(self, writer: asyncio.StreamWriter, message: m.Message, data: bytes = b"") -> None:
        if writer.is_closing():
            log.warning("answer %s not sent: the connection is gone", m.describe(message))
            return
        writer.write(data or m.frame(m.encode(message)))

    async def _answer(self, message: m.Message, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._serve(message)
            data = m.frame(m.encode(answer))  # an answer that cannot be sent is a malfunction
        except Exception:
            log.exception("failed to serve %s", m.describe(message))
            answer, data = m.refusal(message, m.SYSTEM_MALFUNCTION), b""
        self._send(writer, answer, data)

    async def _serve(self, message: m.Message) -> m.Message:
        mti = message["t"]
        if mti == m.NETWORK:
            answer: m.Message = {k: message[k] for k in ("7", "11", "70") if k in message}
            code = m.APPROVED if message.get("70") in (m.SIGN_ON, m.SIGN_OFF, m.ECHO) else "12"
            return {"t": m.NETWORK_RESPONSE, **answer, "39": code}
        if mti in (m.REVERSAL, m.REVERSAL_REPEAT):
            return await self._reverse(message)
        try:
            request = m.parse_request(message)
        except m.WireError as exc:
            log.warning("refused %s: %s", m.describe(message), exc)
            known = any(k.mti == mti and k.processing_code == message.get("3") for k in m.KINDS)
            return m.refusal(message, m.FORMAT_ERROR if known else m.INVALID_TRANSACTION)
        try:
            result = await self.ledger.execute(request)
        except api.SwitchUnavailable:
            return m.refusal(message, m.SYSTEM_MALFUNCTION)
        return m.response_message(message, result)

    async def _reverse(self, message: m.Message) -> m.Message:
        try:
            key = str(m.json_field(message, "48")["key"])
        except (m.WireError, KeyError):
            return m.refusal(message, m.FORMAT_ERROR)
        try:
            outcome = await self.ledger.reverse(key)
        except api.SwitchUnavailable:
            return m.refusal(message, m.SYSTEM_MALFUNCTION)
        log.info("reversal %s: %s", m.describe(message), outcome)
        answer: m.Message = {k: message[k] for k in ("3", "4", "7", "11", "37", "41", "90")
                             if k in message}
        code = "12" if outcome is Reversal.not_reversible else m.APPROVED
        return {"t": m.REVERSAL_RESPONSE, **answer, "39": code}
