"""A stand-in for Asterisk 22 on the other end of a FastAGI socket, with a scripted caller.

It connects to the server under test as Asterisk does, sends the `agi_*` header at
once, and answers each command byte for byte as the recordings in
`asterisk-agi-transcripts.md` show a real Asterisk 22 answering:

- keys count only while a command that reads keys runs; a key that ends while no
  such command runs (between two commands, or during `STREAM FILE x ""`) is thrown
  away and noted in `CallRecord.dropped`;
- escape digits come back as ASCII codes; `GET DATA` returns the keys themselves;
- when the caller hangs up, the running command ends with its failure answer, a
  lone `HANGUP` line follows, and live-only commands get `511`; the socket stays
  open until the server closes it;
- `\\r\\n` is not a line end, an empty line gets `510`, a second command sent before
  the answer to the first is noted as pipelining and not answered until more bytes
  come, and a usage error is the one-line `520` or, with `xml_docs`, the block.

Time on the Asterisk side (prompt lengths, timeouts, SendDTMF's pacing) runs
`time_scale` times real time, so a test call takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RATE = 8000
ALL_KEYS = "0123456789*#"
DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
USAGE = b"520 Invalid command syntax.  Proper usage not available.\n"
UNKNOWN = b"510 Invalid or unknown command\n"
#: SendDTMF: the first key ends 0.2 s after it starts, each next one 0.35 s later
FIRST_KEY, NEXT_KEY = 0.2, 0.35
#: the lone HANGUP line comes this long after the answer of the command it cut
HANGUP_LINE_DELAY = 0.04
_counter = itertools.count(1)


@dataclass(frozen=True)
class Press:
    """The caller keys `keys` (SendDTMF pacing). `on`: once a prompt of that name starts
    playing; None: once the server waits for keys in silence (a caller who waits)."""

    keys: str
    on: str | None = None
    after: float = 0.0


@dataclass(frozen=True)
class HangUp:
    on: str | None = None
    after: float = 0.0


Action = Press | HangUp


@dataclass
class CallRecord:
    commands: list[str] = field(default_factory=list)
    transcript: list[tuple[float, str, bytes]] = field(default_factory=list)
    #: files whose playback started, as the server named them
    played: list[str] = field(default_factory=list)
    #: keys the caller pressed while no command was reading them (thrown away)
    dropped: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    pipelined: bool = False
    closed_by_server: bool = False
    hung_up_by_caller: bool = False
    timed_out: bool = False

    @property
    def agistatus(self) -> str:
        return self.variables.get("AGISTATUS", "")


def header_bytes(script: str = "hotline", *, caller: str = "13800138000",
                 caller_name: str = "Test Caller", language: str = "en",
                 args: Sequence[str] = (), extension: str = "95558", context: str = "hotline",
                 host: str = "127.0.0.1", port: int = 4573) -> bytes:
    """The 22 `agi_*` lines Asterisk 22 sends, in its order, then the arguments."""
    n = next(_counter)
    lines = [
        ("agi_network", "yes"), ("agi_network_script", script),
        ("agi_request", f"agi://{host}:{port}/{script}"),
        ("agi_channel", f"PJSIP/trunk-{n:08x}"), ("agi_language", language),
        ("agi_type", "PJSIP"), ("agi_uniqueid", f"{int(time.time())}.{n}"),
        ("agi_version", "22.10.1"), ("agi_callerid", caller), ("agi_calleridname", caller_name),
        ("agi_callingpres", "0"), ("agi_callingani2", "0"), ("agi_callington", "0"),
        ("agi_callingtns", "0"), ("agi_dnid", "unknown"), ("agi_rdnis", "unknown"),
        ("agi_context", context), ("agi_extension", extension), ("agi_priority", "4"),
        ("agi_enhanced", "0.0"), ("agi_accountcode", ""),
        ("agi_threadid", str(139769069123264 + n)),
        *((f"agi_arg_{i}", arg) for i, arg in enumerate(args, 1)),
    ]
    return "".join(f"{key}: {value}\n" for key, value in lines).encode() + b"\n"


def split_args(text: str) -> list[str]:
    """Command words as Asterisk's parser splits them: spaces separate, double quotes
    group and are removed, a backslash takes the next character as it is."""
    words: list[str] = []
    current: list[str] = []
    quoted = escaped = started = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = started = True
        elif ch == '"':
            quoted = not quoted
            started = True
        elif ch == " " and not quoted:
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            current.append(ch)
            started = True
    if started:
        words.append("".join(current))
    return words


class _Keys:
    """A running command's ear: the keys it takes, plus hang-up and EOF news."""

    def __init__(self, escapes: str, silent: bool = False) -> None:
        self.escapes = escapes
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.silent = silent  # waiting for keys with all its prompts played
        self.touched = False


class _Stop(Exception):
    """The caller hung up or the server closed: the running command ends."""


class AsteriskPeer:
    def __init__(self, host: str, port: int, *, time_scale: float = 0.01,
                 sounds: Path | None = None, xml_docs: bool = False,
                 exit_on_hangup: bool = False, sighup: bool = True) -> None:
        self.host, self.port = host, port
        self.scale = time_scale
        self.sounds = sounds
        self.xml_docs = xml_docs
        self.exit_on_hangup = exit_on_hangup
        self.sighup = sighup

    async def call(self, script: str = "hotline", *, caller: str = "13800138000",
                   caller_name: str = "Test Caller", language: str = "en",
                   args: Sequence[str] = (), header: bytes | None = None,
                   actions: Iterable[Action] = (), timeout: float = 30.0) -> CallRecord:
        if header is None:
            header = header_bytes(script, caller=caller, caller_name=caller_name, language=language,
                                  args=args, host=self.host, port=self.port)
        call = _Call(self, caller, caller_name)
        try:
            await asyncio.wait_for(call.run(header, list(actions)), timeout)
        except TimeoutError:
            call.record.timed_out = True
            call.close()
        return call.record


class _Call:
    def __init__(self, peer: AsteriskPeer, caller: str, caller_name: str) -> None:
        self.peer = peer
        self.scale = peer.scale
        self.record = CallRecord()
        self.vars = {"CALLERID(num)": caller, "CALLERID(name)": caller_name}
        self.timeouts = {"digit": 5.0, "response": 10.0}
        self.keys: _Keys | None = None
        self.dead = False
        self.failed = False
        self.eof = False
        self.changed = asyncio.Event()
        self.buffer = bytearray()
        self.data = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.start = time.monotonic()
        self.hangup_line_owed = False
        self.stalled = False

    # --- the socket -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.writer is None or self.writer.is_closing():
            return
        self.record.transcript.append((time.monotonic() - self.start, "<-", data))
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.writer.write(data)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionError:
                chunk = b""
            if not chunk:
                self.eof = True
                self._notify("EOF")
                self.data.set()
                return
            self.buffer += chunk
            self.data.set()

    async def _line(self) -> bytes | None:
        """The next command line; None when the server has closed its side."""
        if self.stalled:
            # Asterisk reads the socket, handles one line, then waits for the socket to
            # become readable again: a second line already read waits for more bytes.
            self.stalled = False
            self.data.clear()
            await self.data.wait()
            if self.eof:
                return None
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                if b"\n" in self.buffer:
                    self.record.pipelined = self.stalled = True
                return line
            if self.eof:
                return None
            self.data.clear()
            await self.data.wait()

    # --- the call ----------------------------------------------------------------------

    async def run(self, header: bytes, actions: list[Action]) -> None:
        reader, self.writer = await asyncio.open_connection(self.peer.host, self.peer.port)
        self.start = time.monotonic()
        self.write(header)
        reading = asyncio.create_task(self._read(reader))
        caller = asyncio.create_task(self._caller(actions))
        try:
            while True:
                raw = await self._line()
                if raw is None:
                    self.record.closed_by_server = True
                    break
                self.record.transcript.append((time.monotonic() - self.start, "->", raw + b"\n"))
                line = raw.decode("utf-8", "replace")
                self.record.commands.append(line)
                if line[:7].upper() == "FAILURE":
                    self.vars["AGISTATUS"] = "FAILURE"
                    self.write(b"HANGUP\n")
                    break
                try:
                    answer = await self._command(line)
                except _Stop:
                    if self.eof:
                        self.record.closed_by_server = True
                        break
                    raise
                self.write(answer)
                if self.hangup_line_owed:
                    self.hangup_line_owed = False
                    if self.peer.exit_on_hangup:
                        self.write(b"HANGUP\nHANGUP\n")
                        self.vars["AGISTATUS"] = "HANGUP"
                        break
                    if self.peer.sighup:
                        asyncio.get_running_loop().call_later(
                            HANGUP_LINE_DELAY * self.scale, self.write, b"HANGUP\n")
            if "AGISTATUS" not in self.vars:
                self.vars["AGISTATUS"] = ("HANGUP" if self.dead else
                                          "FAILURE" if self.failed else "SUCCESS")
                self.write(b"HANGUP\n")  # the goodbye, read only after a half-close
        finally:
            caller.cancel()
            self.record.variables = dict(self.vars)
            self.close()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading

    # --- the scripted caller ---------------------------------------------------------------

    def _notify(self, news: str) -> None:
        if self.keys is not None:
            self.keys.queue.put_nowait(news)
        self.changed.set()

    async def _changed(self) -> None:
        self.changed.clear()
        await self.changed.wait()

    async def _caller(self, actions: list[Action]) -> None:
        cursor = 0  # prompts before it started before the last action's cue
        for action in actions:
            if action.on is None:
                while not (self.keys is not None and self.keys.silent and not self.keys.touched):
                    await self._changed()
                cursor = len(self.record.played)
            else:
                while True:
                    names = [p.rsplit("/", 1)[-1] for p in self.record.played[cursor:]]
                    if action.on in names:
                        cursor += names.index(action.on) + 1
                        break
                    await self._changed()
            await asyncio.sleep(action.after * self.scale)
            if isinstance(action, HangUp):
                self._hang_up()
                return
            for i, key in enumerate(action.keys):
                await asyncio.sleep((NEXT_KEY if i else FIRST_KEY) * self.scale)
                self._key(key)

    def _key(self, key: str) -> None:
        keys = self.keys
        if self.dead or keys is None or (key not in keys.escapes and keys.escapes != "any"):
            self.record.dropped += key
            return
        keys.touched = True
        keys.queue.put_nowait(key)

    def _hang_up(self) -> None:
        self.dead = True
        self.record.hung_up_by_caller = True
        if self.keys is not None:
            self.hangup_line_owed = True  # after the cut command's answer
            self._notify("HANGUP")
        elif self.peer.exit_on_hangup:
            self.write(b"HANGUP\nHANGUP\n")
            self.vars["AGISTATUS"] = "HANGUP"
            self.close()
        elif self.peer.sighup:
            self.write(b"HANGUP\n")

    # --- media and keys --------------------------------------------------------------------

    def _frames(self, name: str) -> int | None:
        path = Path(name + ".wav") if name.startswith("/") else (
            (self.peer.sounds or Path(".")) / f"{name}.wav")
        try:
            with wave.open(str(path), "rb") as audio:
                if (audio.getframerate(), audio.getsampwidth(), audio.getnchannels()) != (RATE, 2, 1):
                    return None
                return audio.getnframes()
        except (OSError, EOFError, wave.Error):
            return None

    async def _next(self, keys: _Keys, seconds: float | None) -> str | None:
        """A key (or news) within `seconds` of Asterisk time; None when the time is up."""
        try:
            news = await asyncio.wait_for(keys.queue.get(), None if seconds is None
                                          else max(0.0, seconds) * self.scale)
        except TimeoutError:
            return None
        if news in ("HANGUP", "EOF"):
            raise _Stop(news)
        return news

    def _listen(self, escapes: str, silent: bool = False) -> _Keys:
        self.keys = _Keys(escapes, silent)
        self.changed.set()
        if self.dead or self.eof:
            self.keys.queue.put_nowait("EOF" if self.eof else "HANGUP")
        return self.keys

    async def _play(self, name: str, escapes: str) -> tuple[str | None, int]:
        """Play one file; (the escape key that stopped it or None, endpos). Raises _Stop."""
        frames = self._frames(name)
        if frames is None:
            self.failed = True
            self.record.failures.append(name)
            return None, -1
        self.record.played.append(name)
        keys = self._listen(escapes)
        began = time.monotonic()
        key = await self._next(keys, frames / RATE)
        if key is None:
            return None, frames
        heard = int((time.monotonic() - began) / self.scale * RATE)
        return key, min(frames, heard // 160 * 160)

    def _hung(self, stopped: _Stop, answer: bytes) -> bytes:
        """The failure answer of a command the caller's hang-up cut (the server's close
        ends the call instead)."""
        if str(stopped) == "EOF":
            raise stopped
        return answer

    async def _command(self, line: str) -> bytes:
        try:
            return await self._dispatch(line)
        finally:
            self.keys = None

    async def _dispatch(self, line: str) -> bytes:
        words = split_args(line)
        upper = [w.upper() for w in words]
        if not words:
            return UNKNOWN
        head = upper[0]
        two = " ".join(upper[:2])
        live_only = {"ANSWER", "HANGUP", "STREAM FILE", "GET DATA", "GET OPTION", "WAIT FOR DIGIT",
                     "SAY DIGITS", "SAY NUMBER", "CHANNEL STATUS", "RECORD FILE", "CONTROL STREAM"}
        known = {"ANSWER", "HANGUP", "NOOP", "VERBOSE", "EXEC", "STREAM FILE", "GET DATA",
                 "GET OPTION", "WAIT FOR DIGIT", "SAY DIGITS", "SAY NUMBER", "CHANNEL STATUS",
                 "SET VARIABLE", "GET VARIABLE", "GET FULL VARIABLE"}
        name = next((n for n in (" ".join(upper[:3]), two, head) if n in known), None)
        if name is None:
            return UNKNOWN
        if self.dead and name in live_only:
            return DEAD
        rest = words[len(name.split()):]
        if name == "NOOP":
            return b"200 result=0\n"
        if name == "VERBOSE":
            return b"200 result=1\n"
        if name == "ANSWER":
            return b"200 result=0\n"
        if name == "CHANNEL STATUS":
            return b"200 result=6\n"
        if name == "HANGUP":
            self.dead = True
            self.hangup_line_owed = True
            return b"200 result=1\n"
        if name == "SET VARIABLE":
            if len(rest) < 2:
                return await self._usage()
            self._set(rest[0], rest[1])
            return b"200 result=1\n"
        if name == "GET VARIABLE":
            if not rest:
                return await self._usage()
            value = self.vars.get(rest[0])
            return b"200 result=0\n" if value is None else f"200 result=1 ({value})\n".encode()
        if name == "GET FULL VARIABLE":
            if not rest:
                return await self._usage()
            value = re.sub(r"\$\{([^}]*)\}", lambda m: self.vars.get(m.group(1), ""), rest[0])
            return f"200 result=1 ({value})\n".encode()
        if name == "EXEC":
            if not rest:
                return await self._usage()
            return await self._exec(rest[0], " ".join(rest[1:]))
        try:
            return await self._media(name, rest)
        except _Stop as stopped:
            failure = b"200 result=-1\n"
            if name in ("STREAM FILE", "GET OPTION"):
                failure = b"200 result=-1 endpos=0\n"
            return self._hung(stopped, failure)

    async def _media(self, name: str, rest: list[str]) -> bytes:
        if name == "STREAM FILE":
            if len(rest) < 2:
                return await self._usage()
            key, endpos = await self._play(rest[0], rest[1])
            return _played(key, endpos)
        if name == "WAIT FOR DIGIT":
            if not rest:
                return await self._usage()
            ms = int(rest[0])
            key = await self._next(self._listen(ALL_KEYS, silent=True), None if ms < 0 else ms / 1000)
            return f"200 result={ord(key) if key else 0}\n".encode()
        if name == "GET OPTION":
            if len(rest) < 2:
                return await self._usage()
            key, endpos = await self._play(rest[0], rest[1])
            if key is None and endpos >= 0:
                wait = int(rest[2]) / 1000 if len(rest) > 2 else 5.0
                got = await self._next(self._listen("any", silent=True), wait)
                key = got if got and got in rest[1] else None
            return _played(key, endpos)
        if name == "GET DATA":
            if not rest:
                return await self._usage()
            timeout = int(rest[1]) / 1000 if len(rest) > 1 else 6.0
            most = int(rest[2]) if len(rest) > 2 else 1024
            keys, ended = await self._collect([rest[0]], most, timeout, timeout)
            return f"200 result={keys}{' (timeout)' if ended == 'TIMEOUT' else ''}\n".encode()
        # SAY DIGITS / SAY NUMBER: a voice reading the number, no keys taken
        if not rest:
            return await self._usage()
        await self._next(self._listen(""), 0.8 * len(rest[0]))
        return b"200 result=0\n"

    async def _collect(self, files: list[str], most: int, first: float, between: float) -> tuple[str, str]:
        """ast_app_getdata: prompts that any key stops, then keys until `#`, `most` keys or
        a timeout. Returns (keys, "OK" or "TIMEOUT")."""
        key: str | None = None
        for name in files:
            key, _endpos = await self._play(name, ALL_KEYS)
            if key:
                break
        keys = ""
        timeout = first
        while True:
            if key is None:
                key = await self._next(self._listen(ALL_KEYS, silent=True), timeout)
                if key is None:
                    return keys, "TIMEOUT"
            if key == "#":
                return keys, "OK"
            keys += key
            key = None
            if len(keys) >= most:
                return keys, "OK"
            timeout = between

    async def _exec(self, app: str, data: str) -> bytes:
        low = app.lower()
        if low == "set":
            name, _, value = data.partition("=")
            self._set(name, value)
            return b"200 result=0\n"
        if low == "wait":
            await asyncio.sleep(float(data or 0) * self.scale)
            return b"200 result=0\n"
        if low == "playback":
            try:
                for name in data.split(",")[0].split("&"):
                    await self._play(name, "")
            except _Stop as stopped:
                return self._hung(stopped, b"200 result=-1\n")
            return b"200 result=0\n"
        if low == "read":
            parts = (data.split(",") + [""] * 6)[:6]
            variable, files, most_text, _options, _attempts, timeout_text = parts
            most = int(most_text) if most_text.strip().isdigit() and 0 < int(most_text) <= 255 else 255
            given = float(timeout_text) if timeout_text.strip() else 0.0
            first = given if given > 0 else self.timeouts["response"]
            between = given if given > 0 else self.timeouts["digit"]
            self.vars["READSTATUS"] = "ERROR"
            try:
                keys, status = await self._collect([f for f in files.split("&") if f], most, first, between)
            except _Stop as stopped:
                self.vars[variable] = ""
                self.vars["READSTATUS"] = "HANGUP"
                return self._hung(stopped, b"200 result=0\n")
            self.vars[variable] = keys
            self.vars["READSTATUS"] = status
            return b"200 result=0\n"
        return b"200 result=-2\n"

    def _set(self, name: str, value: str) -> None:
        if name.upper() in ("TIMEOUT(DIGIT)", "TIMEOUT(RESPONSE)"):
            self.timeouts[name[8:-1].lower()] = float(value)
        self.vars[name] = value

    async def _usage(self) -> bytes:
        if not self.peer.xml_docs:
            return USAGE
        self.write(b"520-Invalid command syntax.  Proper usage follows:\n")
        await asyncio.sleep(0.04 * self.scale)  # the rest came in a later segment
        return (b"Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive "
                b"a DTMF digit.\n    <value>SUCCESS</value>\n520 End of proper usage.\n")


def _played(key: str | None, endpos: int) -> bytes:
    """STREAM FILE's and GET OPTION's answer: the key's code, 0, or -1 for a missing file."""
    result = ord(key) if key else (-1 if endpos < 0 else 0)
    return f"200 result={result} endpos={max(0, endpos)}\n".encode()
