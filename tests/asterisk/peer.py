"""A stand-in for Asterisk 22 on the far end of a FastAGI socket, with a scripted caller.

`AsteriskPeer.call()` connects to the FastAGI server under test the way Asterisk's
`AGI(agi://host:port/script)` does, sends the `agi_*` header at once, then answers
every command as the recordings in `asterisk-agi-transcripts.md` (and the Asterisk 22
sources of res_agi, app_read and ast_app_getdata) show a real Asterisk answering:

- Media: `STREAM FILE`, `GET DATA`, `GET OPTION`, `WAIT FOR DIGIT`, `SAY *`,
  `EXEC Read/Playback/Wait` take as long as the sound files (8 kHz 16-bit mono WAV)
  and timeouts say, times `time_scale`. A missing file answers at once with `-1`.
- Keys: the scripted caller presses keys with `SendDTMF`'s pacing. A key counts at
  its end, and only if a command that reads keys runs at that moment and takes that
  key; anything else is thrown away (`CallRecord.dropped`), as Asterisk does
  between commands and during `STREAM FILE x ""`.
- Hang-ups: the running command ends with its failure answer, a lone `HANGUP` line
  follows, and from then on live-only commands get `511`. The socket stays open
  until the server closes it (`AGIEXITONHANGUP` and `AGISIGHUP` are peer options, or
  channel variables of the call).
- The wire: only `\\n` ends a line (`NOOP\\r` gets `510`), arguments are split and
  unquoted as res_agi's parser does, usage errors get the one-line `520` or, with
  `xml_docs`, the `520-` block, and a command sent before the answer to the last is
  noted (`CallRecord.pipelined`) and, like Asterisk, left unanswered until more
  bytes arrive. Bytes that arrive while a media command runs stop it, mostly without
  an answer (Asterisk watches the socket while it plays; `WAIT FOR DIGIT` answers
  `result=1`), as res_agi does.
- Timing of small writes: Asterisk's socket uses Nagle's algorithm and the server's
  kernel delays its ACKs by 40 ms, so a second write that follows an unacknowledged
  one (the `HANGUP` line after an answer, the body of a `520-` block) leaves 40 ms
  later, or as soon as the server sends anything. The double keeps that rule (the
  40 ms scaled by `time_scale`), which reproduces every delay in the recordings.

Time on the Asterisk side runs `time_scale` times real time (0.01: a 5 s prompt
takes 50 ms); `CallRecord.transcript` is in real seconds. The caller's keys and
hang-up are put on the call's timeline as soon as their moment is known, each with
the time it happens, and a command's phases (a prompt, the 50 ms after it, the wait
for keys) follow each other on that clock rather than on when the event loop got
round to them: a late wake-up never moves a key into another phase or changes an
`endpos`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import itertools
import os
import re
import time
import wave
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: sample rate of the sound files, and the samples in one 20 ms frame
RATE = 8000
FRAME = 160
#: the keys a prompt that takes "any key" stops on (Asterisk's AST_DIGIT_ANY)
DIGIT_ANY = "0123456789#*ABCD"
#: what the scripted caller may press: keys, and SendDTMF's pauses (w: 0.5 s, W: 1 s)
PRESSABLE = "0123456789*#ABCDabcdwW"

UNKNOWN = b"510 Invalid or unknown command\n"
DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
USAGE = b"520 Invalid command syntax.  Proper usage not available.\n"
USAGE_FIRST = b"520-Invalid command syntax.  Proper usage follows:\n"
USAGE_END = b"520 End of proper usage.\n"
HANGUP_LINE = b"HANGUP\n"

#: SendDTMF: the first key ends 0.2 s after it starts, each next one 0.35 s after the last
FIRST_KEY = 0.2
NEXT_KEY = 0.35
PAUSES = {"w": 0.5, "W": 1.0}
#: the server's delayed ACK, which holds back a small write behind an unacknowledged one
DELAYED_ACK = 0.04
#: res_agi reads a command with fgets() into 8192 bytes: a longer line is cut
MAX_LINE = 8191
#: res_agi keeps at most this many words of a command
MAX_ARGS = 127
#: how long the SAY commands talk, in Asterisk seconds (measured: 3.29 s for `SAY DIGITS
#: 1234`, 5.14 s for `SAY NUMBER 12345`)
SAY_DIGIT = 0.823
SAY_NUMBER_DIGIT = 1.028
SAY_CHARACTER = 0.8
SAY_DATE, SAY_TIME, SAY_DATETIME = 3.0, 2.5, 5.0
#: the channel's TIMEOUT(response) and TIMEOUT(digit) until the server sets them
RESPONSE_TIMEOUT = 10.0
DIGIT_TIMEOUT = 5.0

_counter = itertools.count(1)


# --- the scripted caller ------------------------------------------------------------------


@dataclass(frozen=True)
class Press:
    """The caller keys `keys` with SendDTMF (`w`/`W` pause 0.5/1 s).

    `on`: once playback of a file whose path ends with this (a basename, or more of the
    path: "balance_is/1") starts (after the previous action
    has finished); None: once a command waits in silence for the first key, all its
    prompts played (a caller who waits); "": at once, as soon as the previous action has
    finished. Then `after` more Asterisk seconds."""

    keys: str
    on: str | None = None
    after: float = 0.0

    def __post_init__(self) -> None:
        bad = [key for key in self.keys if key not in PRESSABLE]
        if bad or not self.keys:
            raise ValueError(f"SendDTMF cannot send {self.keys!r}")


@dataclass(frozen=True)
class HangUp:
    """The caller hangs up, on the same cues as `Press`."""

    on: str | None = None
    after: float = 0.0


Action = Press | HangUp


@dataclass
class CallRecord:
    """Everything one call did, seen from Asterisk's side."""

    #: every line the server sent, decoded (UTF-8, undecodable bytes kept as surrogates),
    #: without its `\\n`, in the order Asterisk read them
    commands: list[str] = field(default_factory=list)
    #: (real seconds since connect, "<-" from Asterisk or "->" from the server, bytes) for
    #: every line both ways; a line cut by EOF is kept without its `\\n`
    transcript: list[tuple[float, str, bytes]] = field(default_factory=list)
    #: sound files whose playback started, as the server named them, in order
    played: list[str] = field(default_factory=list)
    #: keys the caller pressed that no command was reading (thrown away)
    dropped: str = ""
    #: the channel variables at the end, AGISTATUS included (functions such as
    #: CALLERID(num) are not variables)
    variables: dict[str, str] = field(default_factory=dict)
    #: the lines that made AGISTATUS FAILURE: a failed command (STREAM FILE or GET OPTION
    #: of a missing file) or a `FAILURE` line
    failures: list[str] = field(default_factory=list)
    #: every sound the server asked for that does not exist (or is not 8 kHz 16-bit mono)
    missing: list[str] = field(default_factory=list)
    #: commands Asterisk knows but this double does not model (answered with 510)
    unsupported: list[str] = field(default_factory=list)
    #: the server sent a command before it had the answer to the last one
    pipelined: bool = False
    #: the server closed (or half-closed) the connection while Asterisk still had it open
    closed_by_server: bool = False
    hung_up_by_caller: bool = False
    #: the channel was hung up by the server: HANGUP, EXEC Hangup, SET AUTOHANGUP
    hung_up_by_server: bool = False
    #: `call(timeout=...)` ran out before the call ended
    timed_out: bool = False
    #: the header block as sent
    header: bytes = b""

    @property
    def agistatus(self) -> str:
        return self.variables.get("AGISTATUS", "")


# --- the header ---------------------------------------------------------------------------


def header_bytes(script: str = "hotline", *, caller: str | bytes = "13800138000",
                 caller_name: str | bytes = "Test Caller", language: str = "en",
                 args: Sequence[str | bytes] = (), extension: str = "95558", context: str = "hotline",
                 priority: int = 4, host: str = "127.0.0.1", port: int = 4573, tech: str = "Local",
                 channel: str | None = None, dnid: str = "unknown", rdnis: str = "unknown",
                 accountcode: str = "") -> bytes:
    """The header Asterisk 22 sends on connect: its 22 `agi_*` lines in its order, one
    `agi_arg_N` line per argument, then an empty line.

    The channel is `Local/ctl@caller-0000000N;1` (or `<tech>/trunk-0000000N`), N a
    counter. Values may be bytes, to send what is not UTF-8."""
    n = next(_counter)
    if channel is None:
        channel = f"Local/ctl@caller-{n:08x};1" if tech == "Local" else f"{tech}/trunk-{n:08x}"
    fields: list[tuple[str, str | bytes]] = [
        ("agi_network", "yes"),
        ("agi_network_script", script),
        ("agi_request", f"agi://{host}:{port}/{script}"),
        ("agi_channel", channel),
        ("agi_language", language),
        ("agi_type", channel.split("/", 1)[0]),
        ("agi_uniqueid", f"{int(time.time())}.{2 * n}"),
        ("agi_version", "22.10.1"),
        ("agi_callerid", caller),
        ("agi_calleridname", caller_name),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", dnid),
        ("agi_rdnis", rdnis),
        ("agi_context", context),
        ("agi_extension", extension),
        ("agi_priority", str(priority)),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", accountcode),
        ("agi_threadid", str(139_769_069_123_264 + 6_295_552 * n)),
        *((f"agi_arg_{i}", arg) for i, arg in enumerate(args, 1)),
    ]
    out = bytearray()
    for key, value in fields:
        out += key.encode() + b": " + (value if isinstance(value, bytes) else value.encode()) + b"\n"
    return bytes(out + b"\n")


def parse_header(header: bytes) -> dict[str, str]:
    """The `key: value` lines of a header, up to its empty line."""
    fields: dict[str, str] = {}
    for raw in header.split(b"\n"):
        if not raw:
            break
        key, sep, value = raw.decode("utf-8", "surrogateescape").partition(":")
        if sep:
            fields[key.strip()] = value[1:] if value.startswith(" ") else value
    return fields


# --- parsing as Asterisk does ------------------------------------------------------------


def split_args(text: str) -> list[str]:
    """A command's words as res_agi's parse_args() splits them: spaces and tabs separate,
    double quotes group (and are removed; an opening quote starts a word, even an empty
    one), and a backslash makes the next character literal."""
    words: list[str] = []
    current: list[str] | None = None  # None: between words
    quoted = escaped = False
    for ch in text:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None and len(words) < MAX_ARGS:
                current = []
            continue
        if ch in " \t" and not quoted and not escaped:
            if current is not None:
                words.append("".join(current))
                current = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        escaped = False
        if current is None:
            if len(words) >= MAX_ARGS:
                continue
            current = []
        current.append(ch)
    if current is not None:
        words.append("".join(current))
    return words


def app_args(data: str, count: int) -> list[str]:
    """A dialplan application's arguments as AST_STANDARD_APP_ARGS splits them: commas
    outside quotes, parentheses and brackets separate; quotes and backslashes are
    removed; the last of `count` takes the rest as it is. Padded with "" to `count`."""
    args: list[str] = []
    i, n = 0, len(data)
    paren = bracket = 0
    quote = ended_on_comma = False
    while i < n and len(args) < count - 1:
        current: list[str] = []
        ended_on_comma = False
        while i < n:
            ch = data[i]
            i += 1
            if ch == '"':
                quote = not quote
                continue
            if ch == "\\":
                if i < n:
                    current.append(data[i])
                    i += 1
                continue
            if ch == "," and not (paren or bracket or quote):
                ended_on_comma = True
                break
            if ch in "()":
                paren = paren + 1 if ch == "(" else max(0, paren - 1)
            elif ch in "[]":
                bracket = bracket + 1 if ch == "[" else max(0, bracket - 1)
            current.append(ch)
        args.append("".join(current))
    if i < n or ended_on_comma:
        args.append(data[i:])
    return (args + [""] * count)[:count]


def _scan_int(text: str) -> int | None:
    """sscanf("%d"): optional blanks and sign, then digits; None when there are none."""
    match = re.match(r"\s*([-+]?\d+)", text)
    return int(match.group(1)) if match else None


def _atoi(text: str) -> int:
    value = _scan_int(text)
    return 0 if value is None else value


def _atof(text: str) -> float:
    match = re.match(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", text)
    return float(match.group(1)) if match else 0.0


def _seconds(text: str) -> float:
    """ast_app_parse_timelen() with seconds as the default unit (`1`, `1.5`, `500ms`)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*", text, re.I)
    if match is None:
        return 0.0
    unit = (match.group(2) or "s").lower()
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "y", "t", "1", "on")


def _false(value: str | None) -> bool:
    return (value or "").strip().lower() in ("no", "false", "n", "f", "0", "off")


def _substring(value: str, offset: int, length: int | None) -> str:
    """${VAR:offset:length} as Asterisk cuts it (negative numbers count from the end)."""
    size = len(value)
    if offset < 0:
        offset = max(0, size + offset)
    if offset >= size:
        return ""
    rest = value[offset:]
    if length is None:
        return rest
    if length >= 0:
        return rest[:length]
    return rest[: max(0, len(rest) + length)]


def _split_files(prompt: str) -> list[str]:
    """`a&b&c` as ast_strsep(..., '&', STRIP | TRIM) splits it."""
    return [part.strip().strip('"') for part in prompt.split("&")]


# --- sound files --------------------------------------------------------------------------

_frames_cache: dict[str, tuple[tuple[int, int], int | None]] = {}


def sound_frames(path: Path) -> int | None:
    """The number of samples in an 8 kHz 16-bit mono WAV; None when the file does not
    exist or is in another format. Cached per path (and file size and mtime)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key, stamp = str(path), (stat.st_mtime_ns, stat.st_size)
    hit = _frames_cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    frames: int | None
    try:
        with wave.open(key, "rb") as audio:
            shape = (audio.getframerate(), audio.getsampwidth(), audio.getnchannels(), audio.getcomptype())
            frames = audio.getnframes() if shape == (RATE, 2, 1, "NONE") else None
    except (OSError, EOFError, wave.Error):
        frames = None
    _frames_cache[key] = (stamp, frames)
    return frames


# --- the commands Asterisk 22 knows --------------------------------------------------------

#: (words, method of _Call or None when not modelled, allowed on a dead channel), in
#: res_agi's order
COMMANDS: list[tuple[tuple[str, ...], str | None, bool]] = [
    (("answer",), "_answer", False),
    (("asyncagi", "break"), "_asyncagi_break", True),
    (("channel", "status"), "_channel_status", False),
    (("database", "del"), "_database_del", True),
    (("database", "deltree"), "_database_deltree", True),
    (("database", "get"), "_database_get", True),
    (("database", "put"), "_database_put", True),
    (("exec",), "_exec", True),
    (("get", "data"), "_get_data", False),
    (("get", "full", "variable"), "_get_full_variable", True),
    (("get", "option"), "_get_option", False),
    (("get", "variable"), "_get_variable", True),
    (("hangup",), "_hangup", False),
    (("noop",), "_noop", True),
    (("receive", "char"), None, False),
    (("receive", "text"), None, False),
    (("record", "file"), None, False),
    (("say", "alpha"), "_say_alpha", False),
    (("say", "digits"), "_say_digits", False),
    (("say", "number"), "_say_number", False),
    (("say", "phonetic"), "_say_phonetic", False),
    (("say", "date"), "_say_date", False),
    (("say", "time"), "_say_time", False),
    (("say", "datetime"), "_say_datetime", False),
    (("send", "image"), None, False),
    (("send", "text"), None, False),
    (("set", "autohangup"), "_set_autohangup", False),
    (("set", "callerid"), "_set_callerid", False),
    (("set", "context"), "_set_context", False),
    (("set", "extension"), "_set_extension", False),
    (("set", "music"), "_set_music", False),
    (("set", "priority"), "_set_priority", False),
    (("set", "variable"), "_set_variable", True),
    (("stream", "file"), "_stream_file", False),
    (("control", "stream", "file"), None, False),
    (("tdd", "mode"), None, False),
    (("verbose",), "_verbose", True),
    (("wait", "for", "digit"), "_wait_for_digit", False),
    (("speech", "create"), None, False),
    (("speech", "set"), None, False),
    (("speech", "destroy"), None, True),
    (("speech", "load", "grammar"), None, False),
    (("speech", "unload", "grammar"), None, True),
    (("speech", "activate", "grammar"), None, False),
    (("speech", "deactivate", "grammar"), None, False),
    (("speech", "recognize"), None, False),
]


def find_command(argv: Sequence[str]) -> tuple[tuple[str, ...], str | None, bool] | None:
    """The command whose words start `argv` (case-insensitive), as res_agi finds it."""
    for entry in COMMANDS:
        words = entry[0]
        if len(argv) >= len(words) and all(a.lower() == w for a, w in zip(argv, words, strict=False)):
            return entry
    return None


#: the usage text of the `520-` block (our own wording; the shape is Asterisk's: free
#: lines without a code, markup and indentation included)
_USAGE: dict[tuple[str, ...], str] = {
    ("get", "data"): (
        "Plays <replaceable>file</replaceable>, then collects keys until the timeout, the maximum\n"
        "number of keys or #. Returns the keys, without the #."),
    ("stream", "file"): (
        "Plays <replaceable>filename</replaceable>; a key among <replaceable>escape_digits</replaceable>"
        " stops it. Returns 0, the ASCII code of that key, or -1 on error or hang-up, with endpos.\n"
        "Sets this channel variable when it ends:\n"
        "<variable>PLAYBACKSTATUS</variable>: how the playback went.\n"
        "    <value>SUCCESS</value>\n"
        "    <value>FAILED</value>"),
    ("wait", "for", "digit"): (
        "Waits up to <replaceable>timeout</replaceable> ms for a key (-1: for ever). Returns its ASCII"
        " code, 0 on timeout, or -1 on hang-up."),
    ("get", "option"): (
        "Like STREAM FILE, then waits up to <replaceable>timeout</replaceable> ms for one of the"
        " escape digits."),
    ("set", "variable"): "Sets the channel variable <replaceable>variablename</replaceable> to a value.",
    ("get", "variable"): "Returns 1 and the value in parentheses, or 0 when the variable is not set.",
    ("exec",): "Runs a dialplan application and returns what it returned (-2: no such application).",
}


def usage_text(words: tuple[str, ...]) -> str:
    return _USAGE.get(words, f"Usage: {' '.join(words).upper()} ... (see the AGI documentation).")


# --- one call -----------------------------------------------------------------------------


class _End(enum.Enum):
    """Why a wait ended without a key."""

    TIMEOUT = "timeout"
    HANGUP = "hangup"
    #: bytes (or EOF) came from the server: Asterisk stops the command without an answer
    COMMAND = "command"


Heard = str | _End

# handler results (res_agi's RESULT_*) and ast_readstring()'s results
_SUCCESS, _SHOWUSAGE, _FAILURE = 0, 1, 2
_FAILED, _COMPLETE, _TIMEOUT, _INTERRUPTED, _EMPTY_END = -1, 0, 1, 2, 3
_EPSILON = 1e-6


class AsteriskPeer:
    """Places FastAGI calls to `host:port` as Asterisk 22 would.

    `time_scale`: real seconds per Asterisk second. `sounds`: where relative sound
    names are found (`<sounds>/<language>/<name>.wav`, then `<sounds>/<name>.wav`);
    absolute names are `<name>.wav`. `xml_docs`: usage errors get the multi-line
    `520-` block. `exit_on_hangup`: AGIEXITONHANGUP=yes. `sighup`: False is
    AGISIGHUP=no (no `HANGUP` lines at all). One peer may run many calls at once."""

    def __init__(self, host: str, port: int, *, time_scale: float = 0.01, sounds: Path | str | None = None,
                 xml_docs: bool = False, exit_on_hangup: bool = False, sighup: bool = True) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.host, self.port = host, port
        self.time_scale = time_scale
        self.sounds = None if sounds is None else Path(sounds)
        self.xml_docs = xml_docs
        self.exit_on_hangup = exit_on_hangup
        self.sighup = sighup
        #: Asterisk's AstDB, shared by this peer's calls: (family, key) -> value
        self.database: dict[tuple[str, str], str] = {}

    async def call(self, script: str = "hotline", *, caller: str = "13800138000",
                   caller_name: str = "Test Caller", language: str = "en", args: Sequence[str] = (),
                   extension: str = "95558", context: str = "hotline", actions: Iterable[Action] = (),
                   header: bytes | None = None, variables: Mapping[str, str] | None = None,
                   timeout: float = 30.0) -> CallRecord:
        """Connect, send the header (`header` instead of the usual one if given), play the
        caller's `actions` in turn, and answer the server until it closes the
        connection (or Asterisk ends the AGI itself). `variables` are channel variables
        set before the AGI starts (AGISIGHUP and AGIEXITONHANGUP among them override the
        peer's options). After `timeout` real seconds the call is dropped and
        the record says `timed_out`."""
        if header is None:
            header = header_bytes(script, caller=caller, caller_name=caller_name, language=language,
                                  args=args, extension=extension, context=context,
                                  host=self.host, port=self.port)
        record = CallRecord(header=header)
        call = _Call(self, record, dict(variables or {}))
        try:
            async with asyncio.timeout(timeout):
                await call.run(list(actions))
        except TimeoutError:
            record.timed_out = True
        return record


class _Call:
    """Asterisk's side of one call: res_agi's loop, the channel, and the caller."""

    def __init__(self, peer: AsteriskPeer, record: CallRecord, variables: dict[str, str]) -> None:
        self.peer = peer
        self.scale = peer.time_scale
        self.loop = asyncio.get_running_loop()
        self.record = record
        fields = parse_header(record.header)
        self.channel = fields.get("agi_channel", "")
        self.uniqueid = fields.get("agi_uniqueid", "")
        self.language = fields.get("agi_language") or "en"
        self.caller_num = _known(fields.get("agi_callerid", ""))
        self.caller_name = _known(fields.get("agi_calleridname", ""))
        self.context = fields.get("agi_context", "")
        self.extension = fields.get("agi_extension", "")
        self.priority = fields.get("agi_priority", "1")
        self.vars: dict[str, str] = {}
        self.response_timeout = RESPONSE_TIMEOUT
        self.digit_timeout = DIGIT_TIMEOUT
        # the socket
        self.writer: asyncio.StreamWriter | None = None
        self.started = self.loop.time()
        self.kernel = bytearray()  # received, not yet read by Asterisk
        self.kernel_at = 0.0  # when the oldest of those bytes came
        self.stdio = bytearray()  # read into Asterisk's FILE buffer, not yet taken as a line
        self.eof = False
        self.eof_at = 0.0
        self.incoming = bytearray()  # the start of a line, for the transcript
        self.held = bytearray()  # written, held back by Nagle's algorithm
        self.unacked_until = 0.0
        self.flush_timer: asyncio.TimerHandle | None = None
        self.closed = False
        # the channel
        self.hangup_at: float | None = None  # when the channel is (to be) hung up
        self.hangup_by_caller = False
        self.dead = False  # ...and the AGI has noticed: dead-channel mode
        self.status = "SUCCESS"
        self.busy = False  # a command runs: bytes from the server now are pipelining
        self.timeline: deque[tuple[float, str]] = deque()  # the caller's keys: (when it ends, key)
        self.clock = 0.0  # where the running command's phases have got to
        self.silent = False  # a command waits in silence for the first key
        self.silent_at = 0.0
        self.played_at: list[float] = []  # when each of record.played started
        self.autohangup: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        for name, value in variables.items():
            self._set(name, value)
        # res_agi reads these two channel variables when the AGI starts
        self.sighup = peer.sighup if "AGISIGHUP" not in self.vars else not _false(self.vars["AGISIGHUP"])
        self.exit_on_hangup = (peer.exit_on_hangup if "AGIEXITONHANGUP" not in self.vars
                               else _true(self.vars["AGIEXITONHANGUP"]))

    # --- running ------------------------------------------------------------------------

    async def run(self, actions: list[Action]) -> None:
        reader, self.writer = await asyncio.open_connection(self.peer.host, self.peer.port)
        self.started = self.loop.time()
        self._send(self.record.header)
        helpers = [asyncio.create_task(self._read(reader)), asyncio.create_task(self._caller(actions))]
        try:
            await self._agi()
        finally:
            for task in helpers:
                task.cancel()
            if self.autohangup is not None:
                self.autohangup.cancel()
            self._close()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._drop_keys(self.loop.time())  # pressed while the call was up, never read
            if self.hung:
                self.record.hung_up_by_caller = self.hangup_by_caller
                self.record.hung_up_by_server = not self.hangup_by_caller
            self.record.variables = dict(self.vars)

    async def _agi(self) -> None:
        """res_agi's run_agi(): between commands, watch the channel and the socket."""
        while True:
            if self.hung and not self.dead:
                self.dead = True
                if self.status == "SUCCESS":
                    self.status = "HANGUP"
                if self.sighup:
                    self._send(HANGUP_LINE)
                if self.exit_on_hangup:
                    break
            if not self.kernel and not self.eof:
                await self._changes(self._hangup_pending())
                continue
            raw = await self._fgets()
            if raw is None:
                break  # the server closed: the script is done
            text = raw.removesuffix(b"\n").decode("utf-8", "surrogateescape")
            self.record.commands.append(text)
            if raw[:7].lower() == b"failure":
                self.status = "FAILURE"
                self.record.failures.append(text)
                break
            await self._command(text)
        self.vars["AGISTATUS"] = self.status
        if self.sighup:
            self._send(HANGUP_LINE)  # the goodbye; only a half-closed server reads it
        self._close()

    async def _fgets(self) -> bytes | None:
        """The next line as fgets() reads it from the socket; None at EOF."""
        while True:
            end = self.stdio.find(b"\n", 0, MAX_LINE)
            if end >= 0:
                size = end + 1
            elif len(self.stdio) >= MAX_LINE:
                size = MAX_LINE
            elif self.kernel:
                self.stdio += self.kernel
                self.kernel.clear()
                continue
            elif self.eof:
                if not self.stdio:
                    return None
                size = len(self.stdio)
            else:
                await self._changes()
                continue
            line = bytes(self.stdio[:size])
            del self.stdio[:size]
            if self.stdio or self.kernel:
                # More was sent before this command's answer. Asterisk answers this one,
                # then waits for the socket to be readable: a line already in its buffer
                # waits for more bytes.
                self.record.pipelined = True
            return line

    async def _command(self, text: str) -> None:
        argv = split_args(text.split("\0", 1)[0])
        entry = find_command(argv)
        if entry is None:
            self._send(UNKNOWN)
            return
        words, method, dead_ok = entry
        if self.dead and not dead_ok:
            self._send(DEAD)
            return
        handler: Callable[[list[str]], Awaitable[int]] | None = (
            None if method is None else getattr(self, method))
        if handler is None:
            self.record.unsupported.append(text)
            self._send(UNKNOWN)
            return
        was_dead = self.dead
        self.busy = True
        self.clock = self.loop.time()
        self._drop_keys(self.clock)  # they ended between commands: read and thrown away
        try:
            result = await handler(argv)
        finally:
            self.busy = False
        if result == _SHOWUSAGE:
            if self.peer.xml_docs:
                self._send(USAGE_FIRST)
                self._send(usage_text(words).encode() + b"\n")
                self._send(USAGE_END)
            else:
                self._send(USAGE)
        elif result == _FAILURE and (was_dead or not self.hung):
            self.status = "FAILURE"
            self.record.failures.append(text)

    # --- the socket ---------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                chunk = await reader.read(65536)
            except OSError:
                chunk = b""
            now = self.loop.time() - self.started
            self._acked()  # anything from the server carries the ACK
            if not chunk:
                if self.incoming:
                    self.record.transcript.append((now, "->", bytes(self.incoming)))
                    self.incoming.clear()
                self.eof, self.eof_at = True, self.loop.time()
                if not self.closed:
                    self.record.closed_by_server = True
                self._notify()
                return
            if self.busy:
                self.record.pipelined = True
            self.incoming += chunk
            for line in _lines(bytes(self.incoming)):
                if not line.endswith(b"\n"):
                    self.incoming[:] = line
                    break
                self.record.transcript.append((now, "->", line))
            else:
                self.incoming.clear()
            if not self.kernel:
                self.kernel_at = self.loop.time()
            self.kernel += chunk
            self._notify()

    def _send(self, data: bytes) -> None:
        """Write, as Nagle's algorithm lets a small write go: at once, or behind an
        unacknowledged one until the server sends something or delays its ACK no more."""
        if self.closed:
            return
        if self.held or self.loop.time() < self.unacked_until:
            self.held += data
            if self.flush_timer is None:
                self.flush_timer = self.loop.call_at(self.unacked_until, self._flush)
            return
        self._transmit(data)

    def _transmit(self, data: bytes) -> None:
        now = self.loop.time()
        for line in _lines(data):
            self.record.transcript.append((now - self.started, "<-", line))
        if self.writer is not None and not self.writer.transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self.writer.write(data)
        self.unacked_until = now + DELAYED_ACK * self.scale

    def _flush(self) -> None:
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        if self.held and not self.closed:
            data = bytes(self.held)
            self.held.clear()
            self._transmit(data)

    def _acked(self) -> None:
        self.unacked_until = 0.0
        self._flush()

    def _close(self) -> None:
        if self.closed:
            return
        self._flush()  # closing pushes out what Nagle held
        self.closed = True
        if self.writer is not None:
            self.writer.close()

    # --- waiting ------------------------------------------------------------------------

    @property
    def hung(self) -> bool:
        """The channel is hung up (now, not only planned)."""
        return self.hangup_at is not None and self.loop.time() >= self.hangup_at - _EPSILON

    def _hangup_pending(self) -> float | None:
        """When a planned hang-up happens, if it has not yet."""
        return None if self.hangup_at is None or self.hung else self.hangup_at

    def _drop_keys(self, before: float) -> None:
        while self.timeline and self.timeline[0][0] < before:
            self.record.dropped += self.timeline.popleft()[1]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _changes(self, deadline: float | None = None) -> None:
        """Until something changes (a key, a hang-up, bytes from the server), or `deadline`."""
        changed = self._changed
        if deadline is None:
            await changed.wait()
            return
        remaining = deadline - self.loop.time()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    async def _listen(self, seconds: float | None, accept: str | None, *, ctrl: bool,
                      silent: bool = False) -> Heard:
        """Read the channel for `seconds` Asterisk seconds (None: for ever) from where the
        command's last phase ended. Returns the first key in `accept` (None: any key);
        other keys are thrown away. `ctrl`: bytes from the server end the wait (Asterisk
        watches the socket too). Events are taken in the order they happen, once they
        have; one that happens after the deadline is left for the next phase."""
        start = self.clock
        deadline = None if seconds is None else start + max(0.0, seconds) * self.scale
        if silent:
            self.silent, self.silent_at = True, start
            self._notify()
        try:
            while True:
                now = self.loop.time() + _EPSILON
                events: list[tuple[float, int]] = []
                if self.timeline and self.timeline[0][0] <= now:
                    events.append((self.timeline[0][0], 0))
                if self.hangup_at is not None and self.hangup_at <= now and not self.dead:
                    events.append((self.hangup_at, 1))
                if ctrl and (self.kernel or self.eof):
                    events.append((self.kernel_at if self.kernel else self.eof_at, 2))
                if events:
                    at, kind = min(events)
                    if deadline is None or at < deadline:
                        self.clock = max(self.clock, at)
                        if kind == 1:
                            return _End.HANGUP
                        if kind == 2:
                            return _End.COMMAND
                        key = self.timeline.popleft()[1]
                        if accept is None or key in accept:
                            return key
                        self.record.dropped += key
                        continue
                if deadline is not None and now >= deadline:
                    self.clock = deadline
                    return _End.TIMEOUT
                wake = [when for when in (deadline, self._hangup_pending(),
                                          self.timeline[0][0] if self.timeline else None)
                        if when is not None]
                await self._changes(min(wake) if wake else None)
        finally:
            if silent:
                self.silent = False

    async def _play(self, name: str, frames: int, accept: str | None, *, ctrl: bool,
                    offset: int = 0) -> tuple[Heard | None, int]:
        """Play a file from `offset`. Returns (None, its length) when it played to the end,
        else (what stopped it, the position then: the frame being played counts)."""
        start = min(max(offset, 0), frames)
        began = self.clock
        self.record.played.append(name)
        self.played_at.append(began)
        self._notify()
        heard = await self._listen((frames - start) / RATE, accept, ctrl=ctrl)
        if heard is _End.TIMEOUT:
            return None, frames
        samples = int((self.clock - began) / self.scale * RATE + 0.001)
        return heard, min(frames, start + (samples // FRAME + 1) * FRAME)

    def _open(self, name: str) -> int | None:
        """ast_openstream(): the file's length in samples, or None (and noted) if missing."""
        if name.startswith("/"):
            candidates = [Path(name + ".wav")]
        elif self.peer.sounds is not None:
            candidates = [self.peer.sounds / self.language / f"{name}.wav", self.peer.sounds / f"{name}.wav"]
        else:
            candidates = []
        for path in candidates:
            frames = sound_frames(path)
            if frames is not None:
                return frames
        self.record.missing.append(name)
        return None

    # --- the caller ---------------------------------------------------------------------

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self._changes()

    def _waits_for_keys(self) -> bool:
        # a key still on its way to the waiting command ends that silence
        return self.hung or (self.silent and not self.timeline)

    def _started(self, name: str, mark: int) -> int | None:
        """The first playback of `name` (the end of a path) from `mark` on."""
        for index in range(mark, len(self.record.played)):
            if f"/{self.record.played[index]}".endswith(f"/{name}"):
                return index
        return None

    def _cued(self, name: str, mark: int) -> bool:
        return self.hung or self._started(name, mark) is not None

    async def _at(self, when: float) -> None:
        delay = when - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _caller(self, actions: list[Action]) -> None:
        mark = 0  # playbacks that started before the last action finished do not cue the next
        done = self.started  # when the last action finished
        for action in actions:
            if action.on is None:
                await self._until(self._waits_for_keys)
                cue = self.silent_at
            elif action.on:
                await self._until(functools.partial(self._cued, action.on, mark))
                index = self._started(action.on, mark)
                cue = done if index is None else self.played_at[index]
            else:
                cue = done
            if self.hung or self.hangup_at is not None:
                return
            when = max(cue, done) + action.after * self.scale
            if isinstance(action, HangUp):
                self.hangup_at, self.hangup_by_caller = when, True
                self._notify()
                return
            done = self._post_keys(action.keys, when)
            await self._at(done)
            mark = len(self.record.played)

    def _post_keys(self, keys: str, start: float) -> float:
        """SendDTMF from `start`: each key goes on the timeline at the moment it ends.
        Returns when the last one ends."""
        at = 0.0
        first = True
        for key in keys:
            if key in PAUSES:
                at += PAUSES[key]
                continue
            at += FIRST_KEY if first else NEXT_KEY
            first = False
            self.timeline.append((start + at * self.scale, key.upper()))
        self._notify()
        return start + at * self.scale

    def _hang_up(self) -> None:
        """The server hangs the channel up, now; the caller is gone with it."""
        if self.hung:
            return
        now = self.loop.time()
        self.hangup_at, self.hangup_by_caller = now, False
        while self.timeline and self.timeline[-1][0] > now:
            self.timeline.pop()
        self._notify()

    # --- variables and functions --------------------------------------------------------

    def _set(self, name: str, value: str) -> None:
        """pbx_builtin_setvar_helper(): a function when the name ends with `)`."""
        if name.endswith(")"):
            self._write_function(name, value)
            return
        self.vars[name[2:] if name.startswith("__") else name[1:] if name.startswith("_") else name] = value

    def _get(self, name: str) -> str | None:
        if name.endswith(")"):
            return self._read_function(name)
        builtin = {"CHANNEL": self.channel, "UNIQUEID": self.uniqueid, "EXTEN": self.extension,
                   "CONTEXT": self.context, "PRIORITY": self.priority, "EPOCH": str(int(time.time()))}
        if name in builtin:
            return builtin[name]
        return self.vars.get(name)

    def _read_function(self, name: str) -> str | None:
        match = re.fullmatch(r"([A-Za-z0-9_]+)\((.*)\)", name, re.S)
        if match is None:
            return None
        function, argument = match.group(1).upper(), match.group(2).strip().lower()
        if function == "CALLERID":
            if argument.startswith("all"):
                if self.caller_name and self.caller_num:
                    return f'"{self.caller_name}" <{self.caller_num}>'
                return self.caller_name or self.caller_num
            if argument.startswith("name"):
                return self.caller_name
            if argument.startswith("num"):
                return self.caller_num
            return None
        if function == "TIMEOUT":
            if argument[:1] == "r":
                return f"{self.response_timeout:.3f}"
            if argument[:1] == "d":
                return f"{self.digit_timeout:.3f}"
            if argument[:1] == "a":
                return "0"
            return None
        if function == "CHANNEL":
            return {"language": self.language, "name": self.channel, "uniqueid": self.uniqueid,
                    "state": "Up", "channeltype": self.channel.split("/", 1)[0]}.get(argument)
        return None

    def _write_function(self, name: str, value: str) -> None:
        match = re.fullmatch(r"([A-Za-z0-9_]+)\((.*)\)", name, re.S)
        if match is None:
            return
        function, argument = match.group(1).upper(), match.group(2).strip().lower()
        if function == "CALLERID":
            if argument.startswith("all"):
                self.caller_name, self.caller_num = _parse_callerid(value)
            elif argument.startswith("name"):
                self.caller_name = value
            elif argument.startswith("num"):
                self.caller_num = value
        elif function == "TIMEOUT":
            if argument[:1] == "r":
                self.response_timeout = _atof(value)
            elif argument[:1] == "d":
                self.digit_timeout = _atof(value)
            elif argument[:1] == "a":
                self._schedule_hangup(_atof(value))
        elif function == "CHANNEL" and argument == "language":
            self.language = value

    def _substitute(self, text: str) -> str:
        """${NAME}, ${FUNCTION(args)} and ${NAME:offset:length}, nested, as Asterisk
        substitutes them; what is not set becomes ""."""
        out: list[str] = []
        i = 0
        while True:
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            j, depth = start + 2, 1
            while j < len(text) and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                break  # no closing brace: Asterisk drops the rest
            inner = text[start + 2: j - 1]
            if "${" in inner:
                inner = self._substitute(inner)
            out.append(self._expand(inner))
            i = j
        return "".join(out)

    def _expand(self, inner: str) -> str:
        depth, cut = 0, -1
        for index, ch in enumerate(inner):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == ":" and depth == 0:
                cut = index
                break
        if cut < 0:
            return self._get(inner) or ""
        value = self._get(inner[:cut]) or ""
        offset, _, length = inner[cut + 1:].partition(":")
        return _substring(value, _atoi(offset), _atoi(length) if length.strip() else None)

    def _schedule_hangup(self, seconds: float) -> None:
        if self.autohangup is not None:
            self.autohangup.cancel()
            self.autohangup = None
        if seconds > 0:
            self.autohangup = self.loop.call_later(seconds * self.scale, self._hang_up)

    # --- commands -----------------------------------------------------------------------
    # Each takes the command's words (argv[0] is the first word of the command), sends its
    # answer, and returns _SUCCESS, _SHOWUSAGE or _FAILURE as res_agi's handlers do.

    def _reply(self, text: str) -> None:
        self._send(text.encode("utf-8", "surrogateescape") + b"\n")

    async def _answer(self, argv: list[str]) -> int:
        self._reply("200 result=0")
        return _SUCCESS

    async def _asyncagi_break(self, argv: list[str]) -> int:
        self._reply("200 result=0")
        return _SUCCESS

    async def _noop(self, argv: list[str]) -> int:
        self._reply("200 result=0")
        return _SUCCESS

    async def _verbose(self, argv: list[str]) -> int:
        if len(argv) < 2:
            return _SHOWUSAGE
        self._reply("200 result=1")
        return _SUCCESS

    async def _channel_status(self, argv: list[str]) -> int:
        if len(argv) == 2:
            self._reply("200 result=6")
        elif len(argv) == 3:
            self._reply("200 result=6" if argv[2] == self.channel else "200 result=-1")
        else:
            return _SHOWUSAGE
        return _SUCCESS

    async def _hangup(self, argv: list[str]) -> int:
        if len(argv) > 2:
            return _SHOWUSAGE
        if len(argv) == 2 and argv[1] != self.channel:
            self._reply("200 result=-1")
            return _SUCCESS
        self._hang_up()
        self._reply("200 result=1")
        return _SUCCESS

    async def _set_variable(self, argv: list[str]) -> int:
        if len(argv) != 4:
            return _SHOWUSAGE
        self._set(argv[2], argv[3])
        self._reply("200 result=1")
        return _SUCCESS

    async def _get_variable(self, argv: list[str]) -> int:
        if len(argv) != 3:
            return _SHOWUSAGE
        value = self._get(argv[2]) if argv[2] else None
        self._reply("200 result=0" if value is None else f"200 result=1 ({value})")
        return _SUCCESS

    async def _get_full_variable(self, argv: list[str]) -> int:
        if len(argv) not in (4, 5):
            return _SHOWUSAGE
        if len(argv) == 5 and argv[4] != self.channel:
            self._reply("200 result=0")
        else:
            self._reply(f"200 result=1 ({self._substitute(argv[3])})")
        return _SUCCESS

    async def _set_callerid(self, argv: list[str]) -> int:
        if len(argv) > 2:
            self.caller_name, self.caller_num = _parse_callerid(argv[2])
        self._reply("200 result=1")
        return _SUCCESS

    async def _set_context(self, argv: list[str]) -> int:
        if len(argv) != 3:
            return _SHOWUSAGE
        self.context = argv[2]
        self._reply("200 result=0")
        return _SUCCESS

    async def _set_extension(self, argv: list[str]) -> int:
        if len(argv) != 3:
            return _SHOWUSAGE
        self.extension = argv[2]
        self._reply("200 result=0")
        return _SUCCESS

    async def _set_priority(self, argv: list[str]) -> int:
        # a label would be looked up in the dialplan, which this double does not have
        if len(argv) != 3 or _scan_int(argv[2]) is None:
            return _SHOWUSAGE
        self.priority = str(_scan_int(argv[2]))
        self._reply("200 result=0")
        return _SUCCESS

    async def _set_music(self, argv: list[str]) -> int:
        if len(argv) < 3:
            return _SHOWUSAGE
        self._reply("200 result=0")
        return _SUCCESS

    async def _set_autohangup(self, argv: list[str]) -> int:
        if len(argv) != 3 or not re.match(r"\s*[-+]?(\d|\.\d)", argv[2]):
            return _SHOWUSAGE
        self._schedule_hangup(max(0.0, _atof(argv[2])))
        self._reply("200 result=0")
        return _SUCCESS

    async def _database_get(self, argv: list[str]) -> int:
        if len(argv) != 4:
            return _SHOWUSAGE
        value = self.peer.database.get((argv[2], argv[3]))
        self._reply("200 result=0" if value is None else f"200 result=1 ({value})")
        return _SUCCESS

    async def _database_put(self, argv: list[str]) -> int:
        if len(argv) != 5:
            return _SHOWUSAGE
        self.peer.database[(argv[2], argv[3])] = argv[4]
        self._reply("200 result=1")
        return _SUCCESS

    async def _database_del(self, argv: list[str]) -> int:
        if len(argv) != 4:
            return _SHOWUSAGE
        found = self.peer.database.pop((argv[2], argv[3]), None) is not None
        self._reply("200 result=1" if found else "200 result=0")
        return _SUCCESS

    async def _database_deltree(self, argv: list[str]) -> int:
        if len(argv) not in (3, 4):
            return _SHOWUSAGE
        tree = argv[3] if len(argv) == 4 else None
        doomed = [k for k in self.peer.database
                  if k[0] == argv[2] and (tree is None or k[1] == tree or k[1].startswith(tree + "/"))]
        for key in doomed:
            del self.peer.database[key]
        # res_agi answers 0 when something was deleted and 1 when nothing was
        self._reply("200 result=0" if doomed else "200 result=1")
        return _SUCCESS

    async def _stream_file(self, argv: list[str]) -> int:
        if not 4 <= len(argv) <= 5:
            return _SHOWUSAGE
        offset = 0
        if len(argv) == 5:
            scanned = _scan_int(argv[4])
            if scanned is None:
                return _SHOWUSAGE
            offset = scanned
        frames = self._open(argv[2])
        if frames is None:
            self._reply(f"200 result=-1 endpos={offset}")
            return _FAILURE
        heard, endpos = await self._play(argv[2], frames, argv[3], ctrl=True, offset=offset)
        if heard is _End.COMMAND:
            return _SUCCESS  # a new command came: no answer to this one
        result = _code(heard)
        self._reply(f"200 result={result} endpos={endpos}")
        self.vars["PLAYBACKSTATUS"] = "FAILED" if result else "SUCCESS"
        return _SUCCESS if result >= 0 else _FAILURE

    async def _get_option(self, argv: list[str]) -> int:
        if not 4 <= len(argv) <= 5:
            return _SHOWUSAGE
        escapes = argv[3]
        timeout = _atoi(argv[4]) if len(argv) == 5 else round(self.digit_timeout * 1000)
        frames = self._open(argv[2])
        if frames is None:
            self._reply("200 result=-1 endpos=0")
            return _FAILURE
        heard, endpos = await self._play(argv[2], frames, escapes, ctrl=True)
        if heard is _End.COMMAND:
            return _SUCCESS
        result = _code(heard)
        if result == 0:
            waited = await self._listen(None if timeout < 0 else timeout / 1000, None, ctrl=True, silent=True)
            result = _code(waited)
            # only an escape digit counts; anything else (another key, a hang-up, a new
            # command) reads as 0
            if not (isinstance(waited, str) and waited in escapes):
                result = 0
        self._reply(f"200 result={result} endpos={endpos}")
        return _SUCCESS if result >= 0 else _FAILURE

    async def _wait_for_digit(self, argv: list[str]) -> int:
        if len(argv) != 4:
            return _SHOWUSAGE
        ms = _scan_int(argv[3])
        if ms is None:
            return _SHOWUSAGE
        heard = await self._listen(None if ms < 0 else ms / 1000, None, ctrl=True, silent=True)
        result = _code(heard)
        self._reply(f"200 result={result}")
        return _SUCCESS if result >= 0 else _FAILURE

    async def _get_data(self, argv: list[str]) -> int:
        if len(argv) < 3:
            return _SHOWUSAGE
        timeout = _atoi(argv[3]) if len(argv) >= 4 else 0
        most = _atoi(argv[4]) if len(argv) >= 5 else 1024
        first, between = 6000.0, 2000.0  # ast_app_getdata_full()'s own defaults
        if timeout > 0:
            first = between = timeout
        elif timeout < 0:
            first = between = 1e9
        stream: tuple[str, int] | None = None
        if argv[2]:
            frames = self._open(argv[2])
            if frames is None:
                self._reply("200 result=-1")
                return _SUCCESS
            stream = (argv[2], frames)
        outcome, keys = await self._readstring(stream, most, between, first, "#", ctrl=True, quiet=True)
        if outcome == _INTERRUPTED:
            return _SUCCESS
        if outcome == _TIMEOUT:
            self._reply(f"200 result={keys} (timeout)")
        elif outcome < 0:
            self._reply("200 result=-1")
        else:
            self._reply(f"200 result={keys}")
        return _SUCCESS

    async def _readstring(self, stream: tuple[str, int] | None, most: int, between_ms: float,
                          first_ms: float, enders: str, *, ctrl: bool, quiet: bool) -> tuple[int, str]:
        """ast_readstring_full(): the rest of the prompt (any key stops it), then keys
        until an ender, `most` keys, or a timeout (`first_ms` for the first key,
        `between_ms` after one). Returns (outcome, keys so far). `quiet`: the wait for
        the first key is a silent one (no prompt follows)."""
        if self.hung or most == 0:
            return _FAILED, ""
        keys = ""
        wait_ms = first_ms
        while True:
            heard: Heard | None = None
            if stream is not None:
                heard, _endpos = await self._play(stream[0], stream[1], DIGIT_ANY, ctrl=ctrl)
                stream = None
            if heard is None:
                heard = await self._listen(wait_ms / 1000, None, ctrl=ctrl, silent=quiet and not keys)
            if heard is _End.HANGUP:
                return _FAILED, keys
            if heard is _End.TIMEOUT:
                return _TIMEOUT, keys
            if heard is _End.COMMAND:
                return _INTERRUPTED, keys
            assert isinstance(heard, str)
            if heard in enders and not keys:
                return _EMPTY_END, keys
            if heard not in enders:
                keys += heard
            if heard in enders or len(keys) >= most:
                return _COMPLETE, keys
            wait_ms = between_ms

    async def _say(self, seconds: float, escapes: str) -> int:
        heard = await self._listen(seconds, escapes, ctrl=True)
        if heard is _End.COMMAND:
            return _SUCCESS
        result = _code(heard)
        self._reply(f"200 result={result}")
        return _SUCCESS if result >= 0 else _FAILURE

    async def _say_digits(self, argv: list[str]) -> int:
        if len(argv) != 4 or _scan_int(argv[2]) is None:
            return _SHOWUSAGE
        return await self._say(SAY_DIGIT * len(argv[2]), argv[3])

    async def _say_number(self, argv: list[str]) -> int:
        number = _scan_int(argv[2]) if len(argv) > 2 else None
        if not 4 <= len(argv) <= 5 or number is None:
            return _SHOWUSAGE
        return await self._say(SAY_NUMBER_DIGIT * (len(str(abs(number))) + (number < 0)), argv[3])

    async def _say_alpha(self, argv: list[str]) -> int:
        if not 4 <= len(argv) <= 5 or (len(argv) == 5 and argv[4][:1] not in ("", *"aAlLnNuU")):
            return _SHOWUSAGE
        return await self._say(SAY_CHARACTER * len(argv[2]), argv[3])

    async def _say_phonetic(self, argv: list[str]) -> int:
        if len(argv) != 4:
            return _SHOWUSAGE
        return await self._say(SAY_CHARACTER * len(argv[2]), argv[3])

    async def _say_date(self, argv: list[str]) -> int:
        if len(argv) != 4 or _scan_int(argv[2]) is None:
            return _SHOWUSAGE
        return await self._say(SAY_DATE, argv[3])

    async def _say_time(self, argv: list[str]) -> int:
        if len(argv) != 4 or _scan_int(argv[2]) is None:
            return _SHOWUSAGE
        return await self._say(SAY_TIME, argv[3])

    async def _say_datetime(self, argv: list[str]) -> int:
        if len(argv) < 4 or _scan_int(argv[2]) is None:
            return _SHOWUSAGE
        return await self._say(SAY_DATETIME, argv[3])

    # --- EXEC and the applications it runs ----------------------------------------------

    async def _exec(self, argv: list[str]) -> int:
        if len(argv) < 2:
            return _SHOWUSAGE
        data = argv[2] if len(argv) > 2 else ""
        if _true(self._get("AGIEXECFULL")):
            data = self._substitute(data)
        application = _APPLICATIONS.get(argv[1].lower())
        result: int = -2 if application is None else await getattr(self, application)(data)
        self._reply(f"200 result={result}")
        # res_agi hands the application's result back as its own; the ones here (0, -1,
        # -2) mean neither a usage error nor a failure
        return _SUCCESS

    async def _app_noop(self, data: str) -> int:
        return 0

    async def _app_answer(self, data: str) -> int:
        return -1 if self.hung else 0

    async def _app_hangup(self, data: str) -> int:
        self._hang_up()
        return -1

    async def _app_set(self, data: str) -> int:
        name, sep, value = data.partition("=")
        if data and sep:
            self._set(name, value)
        return 0

    async def _app_wait(self, data: str) -> int:
        seconds = _seconds(data)
        if seconds <= 0:
            return 0
        # a dead channel has nothing to read: Wait sleeps its time out
        heard = await self._listen(seconds, "", ctrl=False)
        return -1 if heard is _End.HANGUP else 0

    async def _app_playback(self, data: str) -> int:
        if not data:
            return -1
        failed = False
        result = 0
        for name in _split_files(app_args(data, 2)[0]):
            frames = self._open(name) if name else None
            if frames is None:
                failed = True  # Playback skips a missing file
                continue
            if self.hung:
                result = -1
                break
            heard, _endpos = await self._play(name, frames, "", ctrl=False)
            if heard is _End.HANGUP:
                result = -1
                break
        self.vars["PLAYBACKSTATUS"] = "FAILED" if failed else "SUCCESS"
        return result

    async def _app_read(self, data: str) -> int:
        """app_read: Read(variable,file1&file2,maxdigits,options,attempts,timeout)."""
        self.vars["READSTATUS"] = "ERROR"
        if not data:
            return 0
        variable, prompt, maxdigits, options, attempts, timeout = app_args(data, 6)
        tries = max(1, _atoi(attempts)) if attempts else 1
        timeout_ms = 0.0
        if timeout:
            seconds = _atof(timeout)
            timeout_ms = float(int(seconds * 1000)) if seconds > 0 else 0.0
        most = _atoi(maxdigits) if maxdigits else 255
        if not 1 <= most <= 255:
            most = 255
        if not variable:
            return 0
        terminator = "#"
        flags = re.sub(r"\([^)]*\)", "", options)  # option letters, without their arguments
        if "t" in flags:
            chosen = re.search(r"t\(([^)]*)\)", options)
            terminator = chosen.group(1) if chosen else ""
        status = "ERROR"
        outcome = 0
        while tries and not outcome:
            outcome, keys = await self._getdata_terminator(prompt, most, timeout_ms, terminator)
            if outcome == _COMPLETE:
                status = "OK"
            elif outcome == _EMPTY_END:
                if "e" in flags:
                    keys = terminator
                status = "OK"
            elif outcome == _TIMEOUT:
                status = "TIMEOUT"
            self._set(variable, keys)
            if outcome > -1:
                tries = 0 if keys else tries - 1
                outcome = 0
        if self.hung:
            status = "HANGUP"
        self.vars["READSTATUS"] = status
        return 0

    async def _getdata_terminator(self, prompt: str, most: int, timeout_ms: float,
                                  terminator: str) -> tuple[int, str]:
        """ast_app_getdata_terminator(): each prompt in turn; a key during any of them
        stops it and counts. After a prompt that is not the last, a key has 50 ms to
        come; after the last, the timeouts apply (the channel's TIMEOUT(response) and
        TIMEOUT(digit) unless `timeout_ms` is given)."""
        outcome, keys = 0, ""
        files = _split_files(prompt)
        for index, name in enumerate(files):
            stream: tuple[str, int] | None = None
            if name:
                frames = self._open(name)
                if frames is None:
                    outcome = -1
                    continue
                stream = (name, frames)
            last = index == len(files) - 1
            digit_ms = self.digit_timeout * 1000
            if not last:
                first_ms, between_ms = 50.0, digit_ms
            elif timeout_ms > 0:
                first_ms = between_ms = timeout_ms
            elif timeout_ms < 0:
                first_ms = between_ms = 1e9
            else:
                first_ms, between_ms = self.response_timeout * 1000, digit_ms
            outcome, keys = await self._readstring(stream, most, between_ms, first_ms, terminator,
                                                   ctrl=False, quiet=last)
            if outcome == _EMPTY_END or keys:
                return outcome, keys
        return outcome, keys


#: the dialplan applications EXEC can run here (any other answers -2, as one that is
#: not loaded)
_APPLICATIONS = {"read": "_app_read", "set": "_app_set", "wait": "_app_wait",
                 "playback": "_app_playback", "noop": "_app_noop", "verbose": "_app_noop",
                 "log": "_app_noop", "answer": "_app_answer", "hangup": "_app_hangup"}


def _code(heard: Heard | None) -> int:
    """A wait's result as res_agi reports it: a key's ASCII code, 0 for a timeout or a
    finished prompt, -1 for a hang-up, 1 for a new command."""
    if heard is None or heard is _End.TIMEOUT:
        return 0
    if heard is _End.HANGUP:
        return -1
    if heard is _End.COMMAND:
        return 1
    return ord(heard)


def _known(value: str) -> str:
    return "" if value == "unknown" else value


def _parse_callerid(text: str) -> tuple[str, str]:
    """`"Name" <number>`, `Name <number>` or a bare number -> (name, number)."""
    match = re.fullmatch(r'\s*"?([^"<]*?)"?\s*<([^>]*)>\s*', text)
    if match:
        return match.group(1).strip(), match.group(2).strip()
    stripped = text.strip()
    if re.fullmatch(r"[0-9+*#\-() ]+", stripped):
        return "", re.sub(r"[\-() ]", "", stripped)
    return stripped, ""


def _lines(data: bytes) -> list[bytes]:
    """`data` cut after each `\\n` (only `\\n` ends a line here)."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines
