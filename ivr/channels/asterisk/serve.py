"""Running the Asterisk channels in a process: FastAGI (with Twilio beside it) and
classic AGI. The click commands in ivr/cli.py call these."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from ivr import native
from ivr.bank.runtime import open_services
from ivr.channels.asterisk.call import AgiCall, CallInfo, PromptAudio, describe_caller
from ivr.channels.asterisk.fastagi import (
    CALL_LOGGER,
    FastAgiServer,
    flow_routes,
    prompts_warning,
    serve_until_signalled,
)
from ivr.channels.asterisk.protocol import LinkClosed, Reply, ReplyReader, parse_header
from ivr.config import Settings
from ivr.engine.interpreter import Interpreter
from ivr.engine.services import Services
from ivr.engine.verbs import uses_services
from ivr.flow.model import FlowSet
from ivr.speech.catalog import Catalog

log = logging.getLogger("ivr.asterisk")

#: new objects between two sweeps of the garbage collector's youngest generation
GC_THRESHOLD = 70_000

T = TypeVar("T")


@dataclass(frozen=True)
class Loaded:
    """A flow file, checked, with its prompt catalog."""

    path: Path
    flows: FlowSet
    catalog: Catalog | None


@contextlib.asynccontextmanager
async def interpreters(settings: Settings, loaded: list[Loaded]) -> AsyncIterator[dict[Path, Interpreter]]:
    """One interpreter per flow file, sharing the bank and the switch (opened only when
    a flow uses them)."""
    async with contextlib.AsyncExitStack() as stack:
        services: Services | None = None
        if any(uses_services(item.flows) for item in loaded):
            services = await stack.enter_async_context(open_services(settings))
        yield {item.path: Interpreter(item.flows, item.catalog, services) for item in loaded}


class _LogFormat(logging.Formatter):
    """`time level logger: message`, the time's text made once a second, not once a line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        """`created` (seconds since the epoch) as `%(asctime)s` writes it."""
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._text},{int((created - second) * 1000):03d}"


class CallLines:
    """Writes the line each call ends with straight to the server's log stream, as
    `_LogFormat` formats an INFO record of `logger`. `logging`'s general path (a
    LogRecord, filters, the handler chain: some 25 Python functions) costs ~0.2 ms of CPU
    a call on a server that sleeps between commands, about a twentieth of a paced call.
    Once the log is set up otherwise than `server_logging` left it (another handler or
    filter, INFO turned off), the line goes through `logging` like any other."""

    def __init__(self, handler: logging.StreamHandler[Any], logger: logging.Logger,
                 clock: Callable[[], float] = time.time) -> None:
        self.handler = handler
        self.logger = logger
        self.clock = clock
        self._format = cast(_LogFormat, handler.formatter)
        self._head = f" INFO {logger.name}: "

    def __call__(self, message: str) -> None:
        handler = self.handler
        if not self._direct():
            self.logger.info("%s", message)
            return
        line = self._format.stamp(self.clock()) + self._head + message + handler.terminator
        try:
            with handler.lock or contextlib.nullcontext():
                handler.stream.write(line)
                handler.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: logging reports it its way
            self.logger.info("%s", message)

    def _direct(self) -> bool:
        """Whether `logging` would write exactly this line to this handler and nowhere else."""
        handler = self.handler
        if (not self.logger.isEnabledFor(logging.INFO) or handler.filters or handler.level > logging.INFO
                or handler.formatter is not self._format):
            return False
        node: logging.Logger | None = self.logger
        while node is not None:
            if node.filters:
                return False
            if node is logging.root:
                return node.handlers == [handler]
            if node.handlers:
                return False
            if not node.propagate:
                return False  # the line would reach no handler: logging says so itself
            node = node.parent
        return False


def server_logging() -> CallLines:
    """`ivr serve fastagi`'s log: INFO lines to stderr, one a call. Each line costs what
    it says and no more: no caller's file and line, thread or process (the format names
    none of them; finding the caller walks the stack, the process costs a getpid()).
    Returns the writer of the line each call ends with (`CallLines`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormat())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging._srcfile = None  # the logging HOWTO's own advice for speed
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return CallLines(handler, logging.getLogger(CALL_LOGGER))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's when it is installed (it halves the CPU a command costs), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Callable[[], Any]) -> Any:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())


async def serve_fastagi(settings: Settings, loaded: list[Loaded], prompts: Path | None, *,
                        host: str, port: int, max_calls: int, drain: float,
                        twilio_port: int | None = None,
                        announce: Callable[[str], None] = print,
                        call_line: Callable[[str], None] | None = None) -> None:
    """The FastAGI server until SIGTERM; with `twilio_port`, Twilio's webhooks beside it
    in the same process (when TWILIO_AUTH_TOKEN is set)."""
    async with interpreters(settings, loaded) as by_path:
        routes = flow_routes([item.path for item in loaded], by_path)
        audio = PromptAudio(prompts)
        server = FastAgiServer(routes, loaded[0].flows.entry.id, audio, max_calls=max_calls,
                               call_line=call_line)
        warning = prompts_warning(audio, routes)
        if warning:
            announce(f"warning: {warning}")
        names = sorted({item.flows.entry.id for item in loaded})
        announce(native.status.line)
        announce(f"point Asterisk at the FastAGI server with AGI(agi://{host}:{port}/{names[0]}) "
                 "(asterisk-conf/ has the dialplan and how to wire it); SIGTERM drains the calls")
        twilio = None
        if twilio_port is not None:
            twilio = await _start_twilio(settings, loaded[0], prompts, host, twilio_port, announce)
        # Everything loaded so far lives as long as the process: keep it out of the
        # garbage collector's sweeps, which would otherwise walk it for every call.
        gc.freeze()
        # A call's objects are freed by their reference counts as it ends; a sweep, by
        # default every 700 new objects, only walks the objects of the calls in progress
        # (a tenth of the CPU with 1,000 calls open). Sweep a hundred times less often.
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        try:
            await serve_until_signalled(server, host, port, drain)
        finally:
            if twilio is not None:
                twilio[0].should_exit = True
                await twilio[1]


async def _start_twilio(settings: Settings, loaded: Loaded, prompts: Path | None, host: str,
                        port: int, announce: Callable[[str], None]) -> Any:
    if not settings.twilio_auth_token.get_secret_value():
        announce("Twilio webhooks: off (set TWILIO_AUTH_TOKEN to the account's auth token to "
                 f"serve them on port {port}; see the README's Twilio section)")
        return None
    import uvicorn

    from ivr.channels.twilio.app import create_app

    app = create_app(settings, loaded.flows, loaded.catalog, prompts)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    # `_serve` is `serve` without uvicorn's own signal handlers: this process's SIGTERM
    # drains the FastAGI calls first, then stops this server.
    task = asyncio.get_running_loop().create_task(server._serve())
    while not server.started:
        if task.done():
            task.result()
            raise OSError(f"the Twilio app could not start on {host}:{port}")
        await asyncio.sleep(0.02)
    announce(f"Twilio webhooks on http://{host}:{port}/twilio/voice")
    return server, task


# --- classic AGI: a process per call on stdin/stdout ----------------------------------------


class StdioLink:
    """Classic AGI's link: commands to stdout, answers from stdin, one at a time. pyst2's
    `AGI` reads the header and writes the commands; its reply parser is not used, for it
    takes an unsolicited `HANGUP` line as a reply, reads one line of a 520 block and
    prints every reply, keys included, to stderr (which Asterisk logs)."""

    def __init__(self, agi: Any, stdin: io.TextIOBase) -> None:
        self.agi = agi
        self.stdin = stdin
        self._replies = ReplyReader()

    @property
    def hung_up(self) -> bool:
        return self._replies.hung_up

    async def command(self, line: str, timeout: float) -> Reply:
        # Blocking is fine here: this process has one call, and nothing else to do until
        # Asterisk answers. Asterisk closes the pipes when the channel goes, so a read
        # never outlives the call.
        try:
            self.agi.send_command(line)
        except OSError as exc:
            raise LinkClosed(f"Asterisk closed the pipe ({exc})") from None
        while True:
            raw = self.stdin.readline()
            if not raw:
                raise LinkClosed("Asterisk closed the pipe")
            reply = self._replies.feed(raw.rstrip("\n"))
            if reply is not None:
                return reply

    async def exchange(self, work: Coroutine[Any, Any, T]) -> T:
        return await work


def run_classic_agi(settings: Settings, loaded: Loaded, prompts: Path | None,
                    stdin: io.TextIOBase | None = None, stdout: Any = None) -> str:
    """`ivr agi`: one call on this process's stdin/stdout; returns how it ended."""
    from asterisk.agi import AGI  # type: ignore[import-untyped]

    if stdin is None:
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    devnull = open(os.devnull, "w")  # noqa: SIM115  (pyst2 writes its debug lines here)
    try:
        agi = AGI(stdin=stdin, stdout=stdout or sys.stdout, stderr=devnull)
        header = parse_header([f"{key}: {value}" for key, value in agi.env.items()])
        link = StdioLink(agi, stdin)

        async def one_call() -> str:
            async with interpreters(settings, [loaded]) as by_path:
                interpreter = by_path[loaded.path]
                info = CallInfo.from_header(header, interpreter.flows.entry.languages)
                log.info("call %s from %s (classic AGI): flow %s", info.call_id,
                         describe_caller(info), interpreter.flows.entry.id)
                return await AgiCall(interpreter, link, PromptAudio(prompts), info).run()

        return str(run(one_call))
    finally:
        devnull.close()
