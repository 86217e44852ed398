"""The AGI wire protocol, as a real Asterisk 22 speaks it.

Asterisk opens with a header of `agi_key: value` lines ended by an empty line,
then answers each command with one line `CODE result=X [(data)] [endpos=N]`,
except usage errors, which may come as a `520-` block of unprefixed lines ended
by a `520 ` line. At any moment it may also send a lone `HANGUP` line: the caller
has hung up (it is not the answer to anything). Lines end in `\\n` only; a
command must be one line, and the next is sent only after the answer to the last
(Asterisk stalls on two commands in one write).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: the longest line we take from Asterisk (its own replies are short; usage text is longer)
MAX_LINE = 16_384
#: the longest header (22 lines of ~30 bytes, plus the dialplan's arguments)
MAX_HEADER = 65_536

_REPLY = re.compile(r"(\d{3}) result=(\S*)(?: \((.*)\))?(?: endpos=(-?\d+))?\s*$", re.S)
_CODE = re.compile(r"(\d{3})([ -])")
_HEADER_LINE = re.compile(r"(agi_[a-z0-9_]+): ?(.*)")
#: a whole header as `parse_header` takes it, each line ended by `\n`, read in one go
_HEADER_BLOCK = re.compile(r"(?:agi_[a-z0-9_]+: ?[^\n]*\n)*")
_HEADER_PAIR = re.compile(r"(agi_[a-z0-9_]+): ?([^\n]*)\n")


class ProtocolError(Exception):
    """Asterisk sent something that is not AGI: the call cannot go on safely."""


class LinkClosed(Exception):
    """The other side closed the connection, or the command timed out on it."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer from Asterisk. `data` is the text in parentheses (a variable's
    value, `timeout`); `endpos` is where playback stopped, in 8 kHz samples."""

    code: int
    result: str = ""
    data: str | None = None
    endpos: int | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def dead(self) -> bool:
        """511: the channel is hung up; only NOOP, variables, VERBOSE and EXEC work."""
        return self.code == 511

    @property
    def number(self) -> int:
        """`result` as a number (ASCII code of a key, -1 for failure); 0 when empty."""
        try:
            return int(self.result)
        except ValueError:
            return 0

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"


def parse_reply(line: str) -> Reply:
    """A one-line reply (or the last line of a 520 block), without its `\\n`."""
    match = _REPLY.fullmatch(line)
    if match:
        code, result, data, endpos = match.groups()
        return Reply(int(code), result, data, None if endpos is None else int(endpos), line)
    code_match = _CODE.match(line + " ")
    if code_match is None:
        raise ProtocolError(f"not an AGI reply: {line[:80]!r}")
    return Reply(int(code_match.group(1)), text=line)


#: how many distinct reply lines are kept parsed
KNOWN_REPLIES = 1024
#: one-line replies already parsed, by their bytes with the `\n`, shared by every reader:
#: a call's replies are mostly the same few lines (`200 result=0 endpos=N` for a prompt
#: played to its end, `200 result=1`, a key's code), and a Reply cannot be changed.
#: Replies with data in parentheses (a variable's value, which may be keys a caller
#: typed) are not kept.
_KNOWN: dict[bytes, Reply] = {}


class ReplyReader:
    """Turns Asterisk's lines, after the header, into replies: a `HANGUP` line is noted
    (the caller has gone) and never taken as an answer; a `520-` block is read to its
    end. Used by the FastAGI link (fed as bytes arrive) and classic AGI (reading stdin)."""

    __slots__ = ("_block", "hung_up")

    def __init__(self) -> None:
        self.hung_up = False
        self._block: list[str] | None = None

    def known(self, data: bytes) -> Reply | None:
        """The reply when `data` is one whole line (with its `\\n`) seen before, and no
        520 block is being read; else None (`feed_bytes` then reads it)."""
        return _KNOWN.get(data) if self._block is None else None

    def feed_bytes(self, raw: bytes) -> Reply | None:
        """`feed` for a line as it came off the socket, without its `\\n`."""
        if self._block is None:
            line = decode(raw)
            if line != "HANGUP" and not (len(line) > 3 and line[3] == "-"):
                reply = parse_reply(line)
                if reply.data is None:
                    if len(_KNOWN) >= KNOWN_REPLIES:
                        _KNOWN.clear()  # endpos values of interrupted prompts vary: start again
                    _KNOWN[raw + b"\n"] = reply
                return reply
            return self.feed(line)
        return self.feed(decode(raw))

    def feed(self, line: str) -> Reply | None:
        """The reply that `line` completes, or None when it completes none."""
        block = self._block
        if block is not None:
            if line[:4] == block[0][:3] + " ":  # the block's own code ends it
                self._block = None
                reply = parse_reply(line)
                return Reply(reply.code, text="\n".join([*block, line]))
            block.append(line)
            return None
        if line == "HANGUP":
            self.hung_up = True
            return None
        if len(line) > 3 and line[3] == "-" and line[:3].isdigit():
            self._block = [line]
            return None
        return parse_reply(line)


def decode(raw: bytes) -> str:
    """Header values and replies as text; bytes that are not UTF-8 (a caller name from
    an old PBX) are kept as U+FFFD rather than dropping the call."""
    return raw.decode("utf-8", "replace")


def parse_header(lines: list[str]) -> dict[str, str]:
    """The `agi_*` lines, without the blank line that ends them."""
    header: dict[str, str] = {}
    for line in lines:
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"not an AGI header line: {line[:80]!r}")
        header[match.group(1)] = match.group(2)
    return _checked(header)


def parse_header_block(text: str) -> dict[str, str]:
    """`parse_header` for the lines as they came, each ended by `\\n` (the blank line
    that ends the header left out): one pass of the regex engine over them all."""
    if _HEADER_BLOCK.fullmatch(text) is None:
        return parse_header(text.split("\n")[:-1])  # says which line is wrong
    return _checked(dict(_HEADER_PAIR.findall(text)))


def header_lines_ok(text: str) -> bool:
    """Whether complete lines of a header still arriving are all `agi_*` lines."""
    return _HEADER_BLOCK.fullmatch(text) is not None


def _checked(header: dict[str, str]) -> dict[str, str]:
    if "agi_network_script" not in header and "agi_request" not in header:
        raise ProtocolError("the AGI header has neither agi_network_script nor agi_request")
    return header


def arguments(header: Mapping[str, str]) -> list[str]:
    """`agi_arg_1 ... agi_arg_N`, the dialplan's arguments to AGI()."""
    out: list[str] = []
    while f"agi_arg_{len(out) + 1}" in header:
        out.append(header[f"agi_arg_{len(out) + 1}"])
    return out


def quote(value: str) -> str:
    """One argument as Asterisk's parser reads it back: in double quotes, with `\\` and
    `"` escaped. A line break would end the command, so it is refused."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError("an AGI argument cannot hold a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command(*words: str) -> str:
    """A command line, without its `\\n`; checked to be one line."""
    line = " ".join(words)
    if "\n" in line or "\r" in line:
        raise ValueError(f"an AGI command must be one line: {line[:60]!r}")
    return line
