"""`Iso8583Switch`: the switch interface over one persistent ISO 8583 connection.

- Requests share the connection: each gets a STAN and waits for the answer with
  that STAN (and the same retrieval reference), so answers may come in any order;
  a late or repeated answer finds nobody waiting and is dropped.
- The connection signs on when it opens, sends an echo test when the line has
  been quiet for `echo_interval`, and is opened again with growing pauses when it
  drops or the switch stops answering echoes.
- A request gets `timeout` seconds in all. A money-moving request that was sent and
  got no usable answer is reversed: the caller gets `OutcomeUnknown` (never a
  success), and the reversal is sent again (as 0421) until the switch acknowledges
  it, across reconnections, for as long as the process runs. `close()` waits for
  outstanding reversals up to a deadline and says how many are left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

from ivr.clock import Clock, SystemClock
from ivr.switch import api
from ivr.switch.iso8583 import messages as m
from ivr.switch.iso8583.reversals import ReversalStore

log = logging.getLogger("ivr.switch.iso8583")


#: seconds a request must have left to be worth sending
MIN_TIME_LEFT = 0.05


class ConnectionLost(Exception):
    """The connection closed before the answer came."""


@dataclass
class _Waiting:
    mti: str
    rrn: str
    answer: asyncio.Future[m.Message]


@dataclass
class _PendingReversal:
    original: m.Message
    attempts: int = 0
    acknowledged: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    timeout: float = 5.0
    echo_interval: float = 30.0

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """`iso8583://host:port[?timeout=5&echo=30]`; ValueError says what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "iso8583" or not parts.hostname or not parts.port:
            raise ValueError(f"SWITCH_URL '{url}' is not iso8583://host:port")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"timeout", "echo"}
        if unknown:
            raise ValueError(f"SWITCH_URL '{url}': unknown option {sorted(unknown)[0]!r} "
                             "(known: timeout, echo)")
        try:
            timeout = float(query.get("timeout", 5.0))
            echo = float(query.get("echo", 30.0))
        except ValueError:
            raise ValueError(f"SWITCH_URL '{url}': timeout and echo are seconds") from None
        if timeout <= 0 or echo <= 0:
            raise ValueError(f"SWITCH_URL '{url}': timeout and echo must be positive")
        return cls(parts.hostname, parts.port, timeout, echo)


class Iso8583Switch:
    def __init__(self, host: str, port: int, *, timeout: float = 5.0, echo_interval: float = 30.0,
                 connect_timeout: float = 3.0, backoff: tuple[float, float] = (0.05, 5.0),
                 terminal: str = "IVR00001", acquirer: str = "00000001",
                 clock: Clock | None = None, reversals: ReversalStore | None = None) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self.echo_interval = echo_interval
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.terminal, self.acquirer = terminal, acquirer
        self.clock = clock or SystemClock()
        #: where reversals are written down before they are sent (None: memory only)
        self.store = reversals
        self._stan = random.randrange(1, 1_000_000)
        self._waiting: dict[str, _Waiting] = {}
        self._reversals: dict[str, _PendingReversal] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connected: asyncio.Event | None = None
        self._reversal_wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._last_heard = 0.0
        #: how many times a connection was opened (for operators and tests)
        self.connections = 0

    @classmethod
    def at(cls, endpoint: Endpoint, clock: Clock | None = None,
           reversals: ReversalStore | None = None) -> Iso8583Switch:
        """A client for the switch `endpoint` (from `Endpoint.parse(SWITCH_URL)`)."""
        return cls(endpoint.host, endpoint.port, timeout=endpoint.timeout,
                   echo_interval=endpoint.echo_interval, clock=clock, reversals=reversals)

    @property
    def pending_reversals(self) -> int:
        return len(self._reversals)

    async def connect(self, wait: float | None = None) -> bool:
        """Open the connection now; True when signed on within `wait` (default: timeout)."""
        self._start()
        assert self._connected is not None
        try:
            await asyncio.wait_for(self._connected.wait(), self.timeout if wait is None else wait)
        except TimeoutError:
            return False
        return True

    # --- the switch interface -------------------------------------------------------

    async def execute(self, request: api.Request) -> api.Result:
        name = type(request).__name__
        if self._closing:
            raise api.SwitchUnavailable(f"{name} not sent: the switch client is closed")
        self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            message = m.request_message(request, "000000", self.clock.now(), self.terminal,
                                        self.acquirer)
            m.encode(message)
        except m.WireError as exc:
            # Nothing the switch could accept: answered here as the switch would.
            log.warning("%s cannot be put in a message: %s", name, exc)
            if isinstance(request, api.PinChange):
                return api.Declined(api.Decline.weak_pin)
            if "amount" in str(exc):
                return api.Declined(api.Decline.invalid_amount)
            raise api.SwitchUnavailable(f"{name} cannot be sent: {exc}") from None
        moves_money = isinstance(request, api.MONEY_MOVING)
        key = getattr(request, "idempotency_key", "")
        if moves_money and key in self._reversals:
            # Its reversal is not acknowledged yet: sent again, the switch would replay
            # the first approval, which the reversal is about to undo.
            await self._reverse(message, "asked again while its reversal is outstanding")
        try:
            try:
                answer = await self._exchange(message, deadline)
            except ConnectionLost:
                if moves_money:
                    raise
                # An enquiry, or a request the switch makes idempotent by its key:
                # ask again on the next connection while time is left.
                answer = await self._exchange(message, deadline)
        except _NotSent as exc:
            raise api.SwitchUnavailable(f"{name} not sent: {exc}") from None
        except (TimeoutError, ConnectionLost) as exc:
            why = "no answer in time" if isinstance(exc, TimeoutError) else "the connection dropped"
            if moves_money:
                await self._reverse(message, why)
            raise api.SwitchUnavailable(f"{name}: {why}") from None
        try:
            return m.parse_result(request, answer)
        except (m.Refused, m.WireError) as exc:
            why = (f"the switch answered with response code {exc.code}"
                   if isinstance(exc, m.Refused) else f"the answer could not be read: {exc}")
            if moves_money:
                await self._reverse(message, why)
            raise api.SwitchUnavailable(f"{name}: {why}") from None

    async def close(self, deadline: float = 5.0) -> None:
        """Wait up to `deadline` s for outstanding reversals, sign off, and close."""
        if self._reversals and self._tasks:
            waits = [asyncio.create_task(r.acknowledged.wait()) for r in self._reversals.values()]
            await asyncio.wait(waits, timeout=deadline)
            for w in waits:
                w.cancel()
        if self._reversals:
            where = ("they stay in the database for the next process to send" if self.store
                     else "their requests must be reconciled with the switch")
            log.error("%d reversals were not acknowledged before closing; %s: rrn %s",
                      len(self._reversals), where,
                      ", ".join(r.original.get("37", "") for r in self._reversals.values()))
        self._closing = True
        if self._connected is not None and self._connected.is_set():
            with contextlib.suppress(TimeoutError, ConnectionLost, _NotSent):
                loop = asyncio.get_running_loop()
                await self._exchange(m.network_message(m.SIGN_OFF, "000000", self.clock.now()),
                                     loop.time() + min(self.timeout, 1.0))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._writer is not None:
            self._writer.close()

    # --- exchanges -------------------------------------------------------------------

    def _next_stan(self) -> str:
        while True:
            self._stan = self._stan % 999_999 + 1
            stan = f"{self._stan:06d}"
            if stan not in self._waiting:
                return stan

    async def _exchange(self, message: m.Message, deadline: float, *, opening: bool = False) -> m.Message:
        """Send `message` with a fresh STAN and wait for its answer until `deadline`."""
        loop = asyncio.get_running_loop()
        assert self._connected is not None
        if not opening and not self._connected.is_set():
            try:
                await asyncio.wait_for(self._connected.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise _NotSent(f"no connection to the switch at {self.host}:{self.port}") from None
        writer = self._writer
        if writer is None or writer.is_closing():
            raise _NotSent("the connection to the switch is closed")
        if deadline - loop.time() < MIN_TIME_LEFT:
            # Sent now, it could only time out, and a money request would be reversed.
            raise _NotSent("no time left to wait for an answer")
        message["11"] = stan = self._next_stan()
        waiting = _Waiting(m.response_mti(message["t"]), message.get("37", ""), loop.create_future())
        self._waiting[stan] = waiting
        try:
            writer.write(m.frame(m.encode(message)))
            log.debug("sent %s", m.describe(message))
            return await asyncio.wait_for(waiting.answer, max(deadline - loop.time(), 0))
        finally:
            self._waiting.pop(stan, None)

    def _heard(self, message: m.Message) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        waiting = self._waiting.get(message.get("11", ""))
        if (waiting is None or waiting.answer.done() or waiting.mti != message["t"]
                or (waiting.rrn and message.get("37", waiting.rrn) != waiting.rrn)):
            log.info("dropped an answer nobody waits for (late or repeated): %s", m.describe(message))
            return
        waiting.answer.set_result(message)

    # --- the connection ------------------------------------------------------------------

    def _start(self) -> None:
        if self._closing:
            return
        if self._tasks and not any(task.done() for task in self._tasks):
            return
        for task in self._tasks:  # one died of something unforeseen: start afresh
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("restarting the switch client after: %r", task.exception())
            task.cancel()
        self._connected = asyncio.Event()
        self._reversal_wakeup = asyncio.Event()
        self._tasks = [asyncio.create_task(self._keep_connected(), name="iso8583-connection"),
                       asyncio.create_task(self._send_reversals(), name="iso8583-reversals")]

    async def _keep_connected(self) -> None:
        assert self._connected is not None
        pause = self.backoff[0]
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                log.warning("cannot reach the switch at %s:%d (%s); again in %.2f s",
                            self.host, self.port, str(exc) or "timed out", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.backoff[1])
                continue
            self._writer = writer
            self.connections += 1
            reading = asyncio.create_task(self._read(reader))
            try:
                signed_on = await self._exchange(
                    m.network_message(m.SIGN_ON, "000000", self.clock.now()),
                    loop.time() + self.timeout, opening=True)
                if signed_on.get("39") != m.APPROVED:
                    raise ConnectionLost(f"sign-on refused with {signed_on.get('39')}")
                log.info("signed on to the switch at %s:%d", self.host, self.port)
                pause = self.backoff[0]
                self._connected.set()
                assert self._reversal_wakeup is not None
                self._reversal_wakeup.set()
                await self._keep_alive(reading)
            except (TimeoutError, ConnectionLost, _NotSent) as exc:
                log.warning("switch connection failed: %s", str(exc) or "no answer to sign-on")
            except Exception:
                log.exception("switch connection failed")
            finally:
                self._connected.clear()
                writer.close()
                reading.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await reading
            if not self._closing:
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.backoff[1])

    async def _keep_alive(self, reading: asyncio.Task[None]) -> None:
        """Echo when the line is quiet; return when the connection is gone or dead."""
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        while not reading.done():
            quiet = loop.time() - self._last_heard
            if quiet < self.echo_interval:
                await asyncio.wait({reading}, timeout=self.echo_interval - quiet)
                continue
            try:
                await self._exchange(m.network_message(m.ECHO, "000000", self.clock.now()),
                                     loop.time() + self.timeout, opening=True)
            except (TimeoutError, ConnectionLost, _NotSent):
                log.warning("the switch did not answer an echo test; reconnecting")
                return

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                try:
                    length = m.frame_length(await reader.readexactly(2))
                    message = m.decode(await reader.readexactly(length))
                except (asyncio.IncompleteReadError, OSError):
                    log.warning("the switch closed the connection")
                    return
                except m.WireError as exc:
                    log.error("garbage from the switch (%s); reconnecting", exc)
                    return
                self._heard(message)
        finally:
            # Whoever still waits on this connection will not hear back on it; new
            # requests wait for the next one.
            assert self._connected is not None
            self._connected.clear()
            for waiting in list(self._waiting.values()):
                if not waiting.answer.done():
                    waiting.answer.set_exception(ConnectionLost("the connection dropped"))

    # --- reversals ---------------------------------------------------------------------

    async def _reverse(self, original: m.Message, why: str) -> NoReturn:
        """Queue a reversal of `original`, wait for it a while, then raise OutcomeUnknown."""
        key = str(m.json_field(original, "48").get("key", original["37"]))
        pending = self._reversals.get(key)
        assert self._reversal_wakeup is not None
        if pending is None:
            pending = self._reversals[key] = _PendingReversal(original)
            if self.store is not None:  # written down before it is first sent
                await self.store.add(key, original, why, self.clock.now())
        self._reversal_wakeup.set()
        log.warning("reversing %s (rrn %s): %s", m.describe(original), original.get("37"), why)
        try:
            await asyncio.wait_for(pending.acknowledged.wait(), self.timeout)
        except TimeoutError:
            raise api.OutcomeUnknown(f"{why}; the reversal is not acknowledged yet and is "
                                     "being retried", reversed=False) from None
        raise api.OutcomeUnknown(f"{why}; the request was reversed", reversed=True)

    async def _send_reversals(self) -> None:
        assert self._connected is not None and self._reversal_wakeup is not None
        loop = asyncio.get_running_loop()
        pause = self.backoff[0]
        found = None
        while self.store is not None:
            found = await self.store.outstanding()
            if found is not None:
                break
            await asyncio.sleep(pause)  # the database did not answer: try again
            pause = min(pause * 2, self.backoff[1])
        pause = self.backoff[0]
        if self.store is not None and found:
            for key, original, attempts in found:
                if key not in self._reversals:
                    log.warning("sending a reversal an earlier process left: rrn %s", original.get("37"))
                    # It was most likely sent before: the next one goes as a repeat.
                    self._reversals[key] = _PendingReversal(original, max(attempts, 1))
        while True:
            if not self._reversals:
                self._reversal_wakeup.clear()
                await self._reversal_wakeup.wait()
                continue
            await self._connected.wait()
            for key, pending in list(self._reversals.items()):
                message = m.reversal_message(pending.original, "000000", self.clock.now(),
                                             repeat=pending.attempts > 0)
                pending.attempts += 1
                try:
                    answer = await self._exchange(message, loop.time() + self.timeout)
                except (TimeoutError, ConnectionLost, _NotSent):
                    answer = {}
                if answer.get("39") == m.APPROVED:
                    log.info("reversal of rrn %s acknowledged after %d attempts",
                             pending.original.get("37"), pending.attempts)
                    del self._reversals[key]
                    if self.store is not None:
                        await self.store.acknowledged(key, pending.attempts, self.clock.now())
                    pending.acknowledged.set()
                    pause = self.backoff[0]
                    continue
                log.warning("reversal of rrn %s not acknowledged (%s); again in %.2f s",
                            pending.original.get("37"), answer.get("39", "no answer"), pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.backoff[1])


class _NotSent(Exception):
    """The message never left: nothing can have happened at the switch."""
