"""`ivr serve fastagi`: the flows as a FastAGI server, one coroutine per call.

Asterisk's `AGI(agi://host:4573/hotline)` connects here; the path after the host
(`agi_network_script`) picks the flow. The protocol layer is our own, on an
asyncio Protocol, rather than panoramisk's FastAGI server, which cannot be made
safe from outside: a client that stops half-way through its header freezes its
whole event loop, an unsolicited `HANGUP` is taken as the answer to the running
command (every later answer then belongs to the command before it), a 520 usage
block is read as one extra line, and a handler's exception is swallowed with the
call left open. Here:

- the header must arrive whole within `header_timeout` (else the socket is closed);
- `HANGUP` lines are noted as the caller hanging up and never taken as an answer;
- a `520-` block is read to its `520 ` line;
- a reply that is not AGI, a command that outlives its timeout, or any fault in a
  call closes that call's socket only (Asterisk then goes on in the dialplan,
  which queues the caller for an agent) and the server serves the others;
- bytes that are not UTF-8 are kept as U+FFFD;
- beyond `max_calls` calls at once, a new call is handed straight back to the
  dialplan (agents) instead of being made to wait;
- SIGTERM stops accepting, lets the calls in progress finish for `drain` seconds,
  then hands the rest back to the dialplan.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from mypy_extensions import mypyc_attr

from ivr.channels.asterisk.call import COMMAND_TIMEOUT, AgiCall, CallInfo, PromptAudio, describe_caller
from ivr.channels.asterisk.protocol import (
    MAX_HEADER,
    MAX_LINE,
    LinkClosed,
    ProtocolError,
    Reply,
    ReplyReader,
    decode,
    header_lines_ok,
    parse_header_block,
)
from ivr.engine.interpreter import Interpreter

#: the logger of the line each call ends with
CALL_LOGGER = "ivr.fastagi"
log = logging.getLogger(CALL_LOGGER)

T = TypeVar("T")

HEADER_TIMEOUT = 5.0
#: the least time between two checks of the deadlines (headers and commands), so that a
#: deadline may be overrun by up to this much (or a quarter of a shorter timeout)
SWEEP = 1.0
#: the least listen backlog (the kernel caps it at net.core.somaxconn)
BACKLOG = 1024


class FastAgiLink(asyncio.Protocol):
    """One Asterisk connection: reads the header, then runs one command at a time.

    The call's coroutine runs in a task of its own and hands the link one exchange at a
    time (`exchange`): the call's commands up to a turn that needs the bank. The link
    runs an exchange itself: each answer resumes it straight from `data_received`, and
    it writes the next command there, as a callback-driven server would; the task
    wakes once per exchange, not once per command.
    """

    # A thousand calls hold a thousand links: no per-link dict.
    __slots__ = ("_asked", "_buffer", "_command", "_done", "_in_header", "_replies", "_work", "closed",
                 "deadline", "loop", "peer", "server", "transport")

    def __init__(self, server: FastAgiServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._in_header = True
        #: the exchange being run, and the future its result goes to
        self._work: Coroutine[Any, Any, Any] | None = None
        self._done: asyncio.Future[Any] | None = None
        #: a command of the exchange is out and not answered yet
        self._asked = False
        self._replies = ReplyReader()
        self.closed = False
        self.peer = "?"
        #: loop time by which the header or the running command must have come (0: none
        #: awaited); the server's sweeper checks it (a timer per command costs more)
        self.deadline = 0.0
        self._command = ""

    @property
    def hung_up(self) -> bool:
        return self._replies.hung_up

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        # The server's: asking for the running loop costs a getpid() on 3.11.
        self.loop = self.server.loop
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.deadline = deadline = self.loop.time() + self.server.header_timeout
        self.server.watch(deadline)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        answer: Reply | None = None
        if not buffer and self._asked:
            # Most often `data` is the one line that answers the command out, seen before.
            answer = self._replies.known(data)
            if answer is not None:
                self._asked = False
                self.deadline = 0.0
                self._resume(answer, None)
                return
        buffer += data
        # Every line of `data` is read before the exchange goes on, so that a HANGUP that
        # came with an answer is known when the answer is acted on; a second answer in the
        # same bytes cannot be for a command not sent yet.
        try:
            if self._in_header and not self._header_data():
                return
            start = 0
            feed = self._replies.feed_bytes
            while (end := buffer.find(b"\n", start)) >= 0:
                reply = feed(bytes(buffer[start:end]))
                start = end + 1
                if reply is None:
                    continue
                if self._asked and answer is None:
                    answer = reply
                else:
                    log.warning("%s: an answer to no command (%r), ignored", self.peer,
                                reply.text[:80])
            del buffer[:start]
            if len(buffer) > MAX_LINE:
                raise ProtocolError(f"a line of more than {MAX_LINE} bytes")
        except ProtocolError as exc:
            log.error("%s: %s; the connection is closed", self.peer, exc)
            self.close()
            if answer is None:
                self._resume(None, exc)
                return
        if answer is not None:
            self._asked = False
            self.deadline = 0.0
            self._resume(answer, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline = 0.0
        self._resume(None, LinkClosed("Asterisk closed the connection"))
        self.server.forget(self)
        # The transport holds this link too: let both go with their reference counts
        # rather than wait for the garbage collector.
        self.transport = None

    # --- the header ------------------------------------------------------------------------

    def _header_data(self) -> bool:
        """Take the header off the buffer once its blank line has come, and start the call;
        False while it is still arriving (or when the call did not start)."""
        buffer = self._buffer
        if buffer[:1] == b"\n":
            end = 0  # no header lines at all (parse_header_block says what is missing)
        else:
            end = buffer.find(b"\n\n") + 1  # the header's lines, each with its \n
            if end == 0:
                # Not whole yet: what has come must still look like a header.
                lines = buffer.rfind(b"\n") + 1
                if lines > MAX_HEADER:
                    raise ProtocolError("the AGI header is too long")
                text = decode(bytes(buffer[:lines]))
                if not header_lines_ok(text):
                    parse_header_block(text)  # raises, naming the line
                if len(buffer) - lines > MAX_LINE:
                    raise ProtocolError(f"a line of more than {MAX_LINE} bytes")
                return False
        if end > MAX_HEADER:
            raise ProtocolError("the AGI header is too long")
        header = parse_header_block(decode(bytes(buffer[:end])))
        del buffer[:end + 1]
        self._in_header = False
        self.deadline = 0.0
        self.server.start_call(self, header)
        return not self.closed

    # --- exchanges and commands ------------------------------------------------------------

    def exchange(self, work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        if self._work is not None:
            work.close()
            raise RuntimeError("one exchange at a time")
        done: asyncio.Future[T] = self.loop.create_future()
        self._work, self._done = work, done
        self._resume(None, None)  # runs it to its first command
        return done

    async def command(self, line: str, timeout: float) -> Reply:
        if self.closed or self.transport is None:
            raise LinkClosed("the connection is closed")
        if self._work is None:
            raise RuntimeError("an AGI command is sent only inside exchange()")
        if self._asked:
            raise RuntimeError("one AGI command at a time")
        self.transport.write(line.encode() + b"\n")
        self._asked = True
        # The server's sweep enforces the deadline (a timer per command costs more).
        self.deadline = deadline = self.loop.time() + timeout
        if deadline < self.server.sweep_at:
            self.server.watch(deadline)
        self._command = line
        return await _ANSWER  # what `_resume` sends in

    def _resume(self, answer: Reply | None, error: BaseException | None) -> None:
        """Run the exchange on with Asterisk's answer (or with `error` raised at its
        command) until its next command or its end. The first step of an exchange is
        resumed with neither."""
        work = self._work
        if work is None:
            return
        try:
            asked = work.send(answer) if error is None else work.throw(error)
        except StopIteration as end:
            self._settle(end.value, None)
        except Exception as exc:
            self._settle(None, exc)
        else:
            if asked is not _ASKED:  # it awaited something other than a command
                self._asked = False
                self._resume(None, RuntimeError("an exchange awaits nothing but the link's commands"))

    def _settle(self, result: Any, error: Exception | None) -> None:
        done = self._done
        self._work = self._done = None
        self._asked = False
        self.deadline = 0.0
        if done is None or done.done():  # the call's task was cancelled meanwhile
            return
        if error is None:
            done.set_result(result)
        else:
            done.set_exception(error)

    def overdue(self) -> None:
        """Called by the sweeper when the header or the running command is past its
        deadline: the connection is closed (Asterisk goes on in the dialplan)."""
        self.deadline = 0.0
        if self._in_header:
            log.warning("%s: no complete AGI header within %g s; closed", self.peer,
                        self.server.header_timeout)
            self.close()
            return
        word = " ".join(self._command.split()[:2])
        log.warning("%s: no answer to %s in time; the call is closed", self.peer, word)
        self.close()
        if self._asked:
            self._resume(None, LinkClosed(f"no answer to {word} in time"))

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()


#: what a command yields to the link while it waits for Asterisk's answer
_ASKED = object()


class _Answer:
    """What a command awaits: `_resume` sends Asterisk's answer in. (An awaitable object
    rather than a generator-based coroutine, which compiled code could not hand to an
    interpreted caller's `await`.)"""

    __slots__ = ()

    def __await__(self) -> Generator[object, Reply, Reply]:
        reply: Reply = yield _ASKED
        return reply


_ANSWER = _Answer()


# The bench's protocol layer (and tools) may subclass it, also when it is compiled.
@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass
class FastAgiServer:
    """Routes calls by `agi_network_script` to the interpreters in `routes` (flow id to
    interpreter); an empty or unknown script gets the `default` route."""

    routes: Mapping[str, Interpreter]
    default: str
    audio: PromptAudio
    max_calls: int = 1000
    header_timeout: float = HEADER_TIMEOUT
    command_timeout: float = COMMAND_TIMEOUT
    links: set[FastAgiLink] = field(default_factory=set)
    calls: dict[FastAgiLink, asyncio.Task[None]] = field(default_factory=dict)
    served: int = 0
    #: the port it listens on (the one the system chose, for port 0)
    port: int = 0
    _server: asyncio.Server | None = None
    #: loop time of the next check of the deadlines (inf: none is due)
    sweep_at: float = float("inf")
    _sweep_timer: asyncio.TimerHandle | None = None
    _sweep_period: float = SWEEP
    #: writes the line each call ends with (None: `log.info`); `ivr serve fastagi` gives
    #: one that writes to its log stream directly (`serve.CallLines`)
    call_line: Callable[[str], None] | None = None
    #: the loop it serves on (set by `start`)
    loop: asyncio.AbstractEventLoop = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.default not in self.routes:
            raise ValueError(f"the default flow '{self.default}' is not among {sorted(self.routes)}")

    async def start(self, host: str, port: int) -> asyncio.Server:
        self.loop = loop = asyncio.get_running_loop()
        # A backlog as deep as the calls allowed: under load the kernel would otherwise drop
        # new connections (the default is 100), and a header resent a second later can
        # miss its deadline.
        self._server = await loop.create_server(self._link, host, port, reuse_address=True,
                                                backlog=max(BACKLOG, self.max_calls))
        # uvloop's servers list their sockets where asyncio's give a tuple (read untyped, or
        # the compiled module would insist on the tuple).
        sockets: Any = getattr(self._server, "sockets")  # noqa: B009
        self.port = int(sockets[0].getsockname()[1])
        self._sweep_period = min(SWEEP, self.header_timeout / 4, self.command_timeout / 4)
        return self._server

    def watch(self, deadline: float) -> None:
        """A link's new deadline comes before the next sweep: sweep at the deadline (but
        not sooner than a period from now). Sweeps are as rare as the deadlines allow: none
        while nothing waits, about one per command timeout while calls are answered."""
        at = max(deadline, self.loop.time() + self._sweep_period)
        if at < self.sweep_at:
            if self._sweep_timer is not None:
                self._sweep_timer.cancel()
            self.sweep_at = at
            self._sweep_timer = self.loop.call_at(at, self._sweep)

    def _sweep(self) -> None:
        """Close the connections whose header or command is past its deadline, then plan
        the next sweep for the earliest deadline left."""
        self._sweep_timer = None
        self.sweep_at = float("inf")
        now = self.loop.time()
        earliest = float("inf")
        for link in list(self.links):
            deadline = link.deadline
            if not deadline:
                continue
            if deadline <= now:
                link.overdue()
            elif deadline < earliest:
                earliest = deadline
        if earliest < float("inf"):
            self.watch(earliest)

    def _link(self) -> FastAgiLink:
        link = FastAgiLink(self)
        self.links.add(link)
        return link

    def forget(self, link: FastAgiLink) -> None:
        self.links.discard(link)

    def start_call(self, link: FastAgiLink, header: dict[str, str]) -> None:
        script = (header.get("agi_network_script") or "").strip("/")
        interpreter = self.routes.get(script)
        if interpreter is None:
            if script:
                log.warning("%s: no flow '%s' (serving %s); the default flow '%s' takes the call",
                            link.peer, script, ", ".join(sorted(self.routes)), self.default)
            interpreter = self.routes[self.default]
        if len(self.calls) >= self.max_calls:
            log.warning("%s: %d calls in progress, the limit: this one goes back to the dialplan",
                        link.peer, len(self.calls))
            link.close()
            return
        info = CallInfo.from_header(header, interpreter.flows.entry.languages)
        task = self.loop.create_task(self._serve(link, interpreter, info))
        self.calls[link] = task

    async def _serve(self, link: FastAgiLink, interpreter: Interpreter, info: CallInfo) -> None:
        call = AgiCall(interpreter, link, self.audio, info, self.command_timeout)
        try:
            await call.run()
            line = (f"call {info.call_id} from {describe_caller(info)} on {info.channel}: "
                    f"flow {interpreter.flows.entry.id}, {call.outcome}")
            if self.call_line is None:
                log.info("%s", line)
            else:
                self.call_line(line)
        except asyncio.CancelledError:
            log.warning("call %s: stopped by the server's shutdown; back to the dialplan", info.call_id)
        except Exception:
            log.exception("call %s: failed; back to the dialplan (agents)", info.call_id)
        finally:
            self.calls.pop(link, None)
            self.served += 1
            # Asterisk keeps the channel until the socket closes, even after a hang-up.
            link.close()

    async def drain(self, deadline: float) -> int:
        """Stop taking calls; wait up to `deadline` seconds for those in progress, then
        hand the rest back to the dialplan. Returns how many had to be cut."""
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            if link not in self.calls:
                link.close()  # connected, header not complete: nothing started yet
        tasks = list(self.calls.values())
        if tasks:
            log.info("draining: %d call(s) in progress, up to %.0f s", len(tasks), deadline)
            await asyncio.wait(tasks, timeout=deadline)
        left = [task for task in self.calls.values() if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=5)
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self._server is not None:
            await self._server.wait_closed()
        return len(left)


class running:
    """`async with running(server, host, port):` serves inside the block and drains on the
    way out. (A class, not an async generator: the module is compiled.)"""

    def __init__(self, server: FastAgiServer, host: str, port: int, drain: float = 30.0) -> None:
        self.server, self.host, self.port, self.drain = server, host, port, drain

    async def __aenter__(self) -> FastAgiServer:
        await self.server.start(self.host, self.port)
        return self.server

    async def __aexit__(self, *exc: object) -> None:
        await self.server.drain(self.drain)


async def serve_until_signalled(server: FastAgiServer, host: str, port: int, drain: float) -> None:
    """`ivr serve fastagi`: serve until SIGTERM or SIGINT, then drain."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start(host, port)
    log.info("FastAGI on %s:%d: flows %s (default %s), at most %d calls at once",
             host, server.port, ", ".join(sorted(server.routes)), server.default, server.max_calls)
    await stop.wait()
    log.info("stopping: no new calls; %d in progress get %.0f s to finish", len(server.calls), drain)
    # A second signal cuts the drain short.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: [task.cancel() for task in server.calls.values()])
    cut = await server.drain(drain)
    log.info("stopped after %d calls%s", server.served,
             f"; {cut} handed back to the dialplan" if cut else "")


def prompts_warning(audio: PromptAudio, routes: Mapping[str, Interpreter]) -> str | None:
    """One line for the operator when prompts have no rendered audio."""
    missing: set[tuple[str, str]] = set()
    for interpreter in routes.values():
        missing.update(audio.missing(interpreter.catalog))
    if not missing:
        return None
    sample = ", ".join(f"{lang}/{prompt}" for lang, prompt in sorted(missing)[:3])
    return (f"{len(missing)} prompt(s) have no audio under {audio.build} ({sample}, ...): "
            "Asterisk will skip them. Render them or drop recordings there as "
            "<lang>/<id>.wav (8 kHz, 16-bit, mono).")


def flow_routes(paths: list[Path], interpreters: Mapping[Path, Interpreter]) -> dict[str, Interpreter]:
    """Flow id (and file stem) to interpreter; a name claimed twice is an error."""
    routes: dict[str, Interpreter] = {}
    for path in paths:
        interpreter = interpreters[path]
        for name in {interpreter.flows.entry.id, path.stem}:
            if name in routes and routes[name] is not interpreter:
                raise ValueError(f"two flows answer to '{name}': rename one")
            routes[name] = interpreter
    return routes


__all__ = ["FastAgiLink", "FastAgiServer", "ProtocolError", "flow_routes", "prompts_warning",
           "running", "serve_until_signalled"]
