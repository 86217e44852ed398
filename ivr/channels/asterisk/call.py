"""One call over AGI: Turns into AGI commands, Asterisk's answers into events.

The same code serves FastAGI (one coroutine a call on the server's event loop)
and classic AGI (a process a call on stdin/stdout): it talks to a `Link`. The
call's commands, and the turns of the flow between them, are one exchange up to
a turn that talks to the bank or the switch: a coroutine that awaits nothing but
the link's commands, which the FastAGI link runs straight from the bytes Asterisk
sends. The call's task wakes only for the bank.

Media and keys, as a real Asterisk behaves (see DESIGN.md): keys that arrive
between two commands are thrown away, so every prompt before a wait is played
by a command that is itself reading keys.

- A menu or a short answer (no secret, fewer than 12 keys, `#` ends it) is one
  `EXEC Read` over all its prompts (`a&b&c`): a key during any of them stops the
  playback and counts; the keys come back in a channel variable, read with one
  `GET FULL VARIABLE`.
- Anything that may be a PIN, a card or an ID number never goes through a channel
  variable (Asterisk logs and publishes those): each prompt is a `STREAM FILE` with
  every key as an escape digit, and the keys after the first come one by one from
  `WAIT FOR DIGIT`, whose answers reach only this socket. So do waits whose first
  and later keys have different timeouts, or another terminator.

When the call leaves the flow, the result goes to the dialplan in channel
variables (IVR_RESULT, IVR_QUEUE, the screen-pop data) and the socket is closed;
the dialplan (asterisk-conf/extensions.conf) hangs up or queues the caller, and
sends anything it does not understand to the agents.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import secrets
import wave
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ivr.bank.phones import normalise_phone
from ivr.bank.secrets import mask_phone
from ivr.channels.asterisk.protocol import LinkClosed, ProtocolError, Reply, arguments, command, quote
from ivr.engine.interpreter import Interpreter, NeedsServices
from ivr.engine.state import CallState
from ivr.engine.turn import (
    CallerHangup,
    Digits,
    Event,
    Gather,
    Hangup,
    InputReason,
    NoInput,
    Segment,
    Transfer,
    Turn,
)
from ivr.speech.catalog import Catalog

log = logging.getLogger("ivr.asterisk")

ALL_KEYS = "0123456789*#"
KEYS_VARIABLE = "IVR_KEYS"
#: a wait that could take a card or ID number (12 keys or more) never uses a channel variable
LONG_INPUT = 12
#: what a command that does not play anything may take before the link is given up
COMMAND_TIMEOUT = 10.0
#: added to a media command's own length (prompts and input timeouts) before giving up
MEDIA_SLACK = 30.0
_DIGIT_RUN = re.compile(r"\d{11,}[\dXx]")  # a card, account or resident ID number
_SAFE_NAME = re.compile(r"[^A-Z0-9_]")
_PROCESS = secrets.token_hex(4)
_CALLS = itertools.count(1)

T = TypeVar("T")


class Link(Protocol):
    """A connection to Asterisk that runs one command at a time."""

    @property
    def hung_up(self) -> bool:
        """Asterisk said `HANGUP` on its own: the caller is gone."""
        ...

    def command(self, line: str, timeout: float) -> Awaitable[Reply]:
        """Send one command and wait for its answer; only inside `exchange`."""
        ...

    def exchange(self, work: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Run `work`, a coroutine that awaits nothing but this link's commands, to its end."""
        ...


class PromptAudio:
    """Where a prompt's audio is, as Asterisk wants it: an absolute path without
    extension to an 8 kHz 16-bit mono WAV under `<prompts>/build/<language>/`."""

    def __init__(self, prompts: Path | None) -> None:
        self.build = prompts.resolve() / "build" if prompts is not None else None
        self._missing: set[tuple[str, str]] = set()
        #: (language, prompt, escape keys) to (file, seconds, STREAM FILE command)
        self._streams: dict[tuple[str, str, str], tuple[str, float, str] | None] = {}

    @functools.lru_cache(maxsize=8192)  # noqa: B019  (one per server, lives as long as it)
    def _lookup(self, language: str, prompt: str) -> tuple[str, float] | None:
        if self.build is None:
            return None
        path = self.build / language / f"{prompt}.wav"
        try:
            with wave.open(str(path), "rb") as audio:
                seconds = audio.getnframes() / max(1, audio.getframerate())
        except (OSError, EOFError, wave.Error):
            return None
        name = str(path.with_suffix(""))
        if any(c in name for c in ',&"\\\n'):
            log.error("prompt audio %s: the path cannot hold , & \" or \\ for Asterisk", path)
            return None
        return name, seconds

    def _file(self, language: str, audio_id: str) -> tuple[str, float] | None:
        found = self._lookup(language, audio_id)
        if found is None and (language, audio_id) not in self._missing:
            self._missing.add((language, audio_id))
            log.warning("no audio for '%s' (%s) under %s: it is skipped; run 'ivr prompts "
                        "build' or record it", audio_id, language, self.build)
        return found

    def files(self, segment: Segment) -> list[tuple[str, float]]:
        """The files that say a segment (one for a plain prompt; a template prompt's
        pieces and a composer's words otherwise), each with its length in seconds.
        A file that was not rendered is left out, and said once in the log."""
        found = (self._file(segment.language, part) for part in segment.audio)
        return [file for file in found if file is not None]

    def streams(self, segment: Segment, keys: str) -> list[tuple[str, float, str]]:
        """`files`, each with the STREAM FILE command that plays it with `keys` as escape
        digits; kept, as a file is played the same way on every call."""
        out = []
        for part in segment.audio:
            key = (segment.language, part, keys)
            try:
                stream = self._streams[key]
            except KeyError:
                file = self._file(segment.language, part)
                stream = None if file is None else (*file, command("STREAM FILE", file[0], quote(keys)))
                if len(self._streams) < 8192:
                    self._streams[key] = stream
            if stream is not None:
                out.append(stream)
        return out

    def missing(self, catalog: Catalog | None) -> list[tuple[str, str]]:
        """The files the catalog needs (prompts, template pieces, composers' words) that
        have no audio."""
        if catalog is None:
            return []
        return [(language, audio_id) for language in catalog.languages
                for audio_id, _, _ in catalog.audio_items(language)
                if self._lookup(language, audio_id) is None]


@dataclass(frozen=True)
class CallInfo:
    """What the AGI header says about a call, once read."""

    call_id: str
    script: str
    caller: str | None
    language: str | None
    channel: str

    @classmethod
    def from_header(cls, header: Mapping[str, str], languages: tuple[str, ...]) -> CallInfo:
        script = header.get("agi_network_script") or _script_of(header.get("agi_request", ""))
        unique = header.get("agi_uniqueid") or "0"
        # Two Asterisk boxes may hand out the same uniqueid: the call's id (which keys its
        # money-moving steps) must still be unique, so it carries this process's random
        # prefix and a count.
        call_id = f"agi-{unique}-{_PROCESS}{next(_CALLS):x}"
        return cls(call_id, script.strip("/"), normalise_phone(header.get("agi_callerid")),
                   pick_language(header, languages), header.get("agi_channel", ""))


def _script_of(request: str) -> str:
    """The flow part of `agi://host:port/hotline` (classic AGI gives a script path)."""
    return request.rsplit("/", 1)[-1]


def pick_language(header: Mapping[str, str], languages: tuple[str, ...]) -> str | None:
    """The call's language: a `language=xx-YY` argument to AGI() in the dialplan, else
    the channel's language when it names one the flow offers. Asterisk's default `en`
    is set on every channel nobody configured, so it alone does not choose English."""
    for arg in arguments(header):
        key, _, value = arg.partition("=")
        if key.strip().lower() == "language":
            return _match_language(value.strip(), languages)
    channel = header.get("agi_language", "")
    if channel and channel != "en":
        return _match_language(channel, languages)
    return None


def _match_language(value: str, languages: tuple[str, ...]) -> str | None:
    wanted = value.replace("_", "-").lower()
    for language in languages:
        if language.lower() == wanted:
            return language
    primary = wanted.split("-")[0]
    for language in languages:
        if language.lower().split("-")[0] == primary:
            return language
    return None


def screen_value(value: str) -> str:
    """A value for an agent's screen in a channel variable: one line, short, and no long
    digit run (a card or ID number that a flow passed by mistake is masked)."""
    value = " ".join(str(value).split())[:200]
    return _DIGIT_RUN.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], value)


class AgiCall:
    """Runs one call of `interpreter` over `link`."""

    __slots__ = ("audio", "command_timeout", "info", "interpreter", "link", "outcome", "state")

    def __init__(self, interpreter: Interpreter, link: Link, audio: PromptAudio, info: CallInfo,
                 command_timeout: float = COMMAND_TIMEOUT) -> None:
        self.interpreter = interpreter
        self.link = link
        self.audio = audio
        self.info = info
        self.command_timeout = command_timeout
        self.state: CallState | None = None
        #: how the call left the flow: transfer, hangup, caller_hangup, or the fault
        self.outcome = ""

    # --- the call ------------------------------------------------------------------------

    async def run(self) -> str:
        """Play the call to its end; returns how it ended. Never raises for the caller's or
        Asterisk's doings: the link is simply given up (the dialplan then queues the caller
        for an agent, since IVR_RESULT is not set)."""
        info = self.info
        try:
            state = self.interpreter.start(info.call_id, caller=info.caller, language=info.language)
            self.state = state
            turn = await self.interpreter.advance_async(state)
            while True:
                played = await self.link.exchange(self.play_turns(turn))
                if played is True:
                    break
                if played is False:
                    self.outcome = await self._lost("the caller hung up during the last prompts")
                    break
                turn = await self.interpreter.advance_async(state, played)
                if isinstance(played, CallerHangup):
                    self.outcome = "caller_hangup"
                    break
        except (LinkClosed, ConnectionError) as exc:
            self.outcome = await self._lost(f"link lost: {exc}" if str(exc) else "link lost")
        except ProtocolError as exc:
            log.error("call %s: %s; the call goes to the dialplan's fallback", info.call_id, exc)
            self.outcome = "protocol_error"
        return self.outcome

    async def _lost(self, why: str) -> str:
        """The socket is gone (or timed out): the caller is treated as hung up."""
        log.info("call %s: %s", self.info.call_id, why)
        if self.state is not None and self.state.status != "ended":
            try:
                await self.interpreter.advance_async(self.state, CallerHangup())
            except Exception:
                log.exception("call %s: ending the flow after the link was lost failed",
                              self.info.call_id)
        return "caller_hangup"

    async def play_turns(self, turn: Turn) -> Event | bool:
        """One exchange: `turn` played to the caller, and the turns after it as long as
        they need neither the bank nor the switch (those are computed here, so that the
        call's task wakes only for the bank). Returns the caller's event that the next
        turn must await the bank for, or their hang-up (the task then ends the flow with
        it); True when the call has left the flow to the dialplan, False when the caller
        hung up during its last prompts."""
        state = self.state
        assert state is not None
        while isinstance(turn.wait, Gather):
            event = await self.gather(turn.media, turn.wait)
            if isinstance(event, CallerHangup):
                return event
            try:
                turn = self.interpreter.advance(state, event)
            except NeedsServices:  # nothing of the turn happened: the task runs it
                return event
        return await self.leave(turn)

    async def leave(self, turn: Turn) -> bool:
        """The call leaves the flow: its last prompts, then the result for the dialplan
        (which takes over when the socket closes); False when the caller hangs up during
        the last prompts."""
        wait = turn.wait
        for segment in turn.media:
            if await self.play(segment) is None:
                return False
        state = self.state
        assert state is not None
        if isinstance(wait, Transfer):
            variables = {"IVR_RESULT": "transfer", "IVR_QUEUE": wait.queue, "IVR_REASON": wait.reason,
                         "IVR_CUSTOMER": "" if state.customer_id is None else str(state.customer_id),
                         "IVR_AUTH": state.auth, "IVR_NODE": f"{state.flow}:{state.node}",
                         "IVR_LANGUAGE": state.language}
            for name, value in wait.data.items():
                variables[f"IVR_DATA_{_SAFE_NAME.sub('_', name.upper())}"] = value
            await self.set_variables(variables)
            self.outcome = f"to queue {wait.queue} ({wait.reason})"
            return True
        assert isinstance(wait, Hangup)
        await self.set_variables({"IVR_RESULT": "hangup", "IVR_REASON": wait.reason})
        reply = await self.link.command("HANGUP", self.command_timeout)
        if not reply.ok and not reply.dead:
            log.warning("call %s: HANGUP answered %r", self.info.call_id, reply.text)
        self.outcome = "hangup"
        return True

    async def set_variables(self, variables: Mapping[str, str]) -> None:
        for name, value in variables.items():
            reply = await self.link.command(command("SET VARIABLE", name, quote(screen_value(value))),
                                            self.command_timeout)
            if not reply.ok:
                raise ProtocolError(f"SET VARIABLE {name} answered {reply.text!r}")

    # --- media ----------------------------------------------------------------------------

    async def play(self, segment: Segment, keys: str = "") -> str | None:
        """STREAM FILE one prompt (its files in turn). Returns the key that stopped it
        ('' when it played to the end or has no audio), or None when the caller has
        hung up."""
        for name, seconds, line in self.audio.streams(segment, keys):
            reply = await self.link.command(line, seconds + MEDIA_SLACK)
            key = reply.number
            if key < 0 or reply.code != 200:  # failed, or a dead channel (511)
                if await self._gone(reply):
                    return None
                log.error("call %s: Asterisk could not play %s (%s)", self.info.call_id, name,
                          reply.text)
                continue
            if key > 0:
                return chr(key)
        return ""

    async def _gone(self, reply: Reply) -> bool:
        """After a failed media command: has the caller hung up, or did the file fail?"""
        if reply.dead or self.link.hung_up:
            return True
        probe = await self.link.command("CHANNEL STATUS", self.command_timeout)
        return probe.dead or self.link.hung_up

    async def gather(self, media: tuple[Segment, ...], wait: Gather) -> Event:
        if (not wait.secret and wait.max_digits < LONG_INPUT and wait.terminator == "#"
                and wait.barge_in
                and (wait.max_digits == 1 or wait.first_digit_timeout == wait.inter_digit_timeout)):
            return await self._read(media, wait)
        return await self._stream_and_wait(media, wait)

    async def _read(self, media: tuple[Segment, ...], wait: Gather) -> Event:
        files: list[str] = []
        seconds = 0.0
        for segment in media:
            for name, length in self.audio.files(segment):
                files.append(name)
                seconds += length
        args = f"{KEYS_VARIABLE},{'&'.join(files)},{wait.max_digits},,1,{wait.first_digit_timeout:g}"
        limit = seconds + wait.first_digit_timeout * (wait.max_digits + 1) + MEDIA_SLACK
        reply = await self.link.command(command("EXEC", "Read", quote(args)), limit)
        if reply.dead:
            return CallerHangup()
        got = await self.link.command(
            command("GET FULL VARIABLE", quote(f"${{{KEYS_VARIABLE}}}|${{READSTATUS}}")),
            self.command_timeout)
        if not got.ok or got.data is None or "|" not in got.data:
            raise ProtocolError(f"reading the keys gave {got.text!r}")
        keys, _, status = got.data.rpartition("|")
        if status == "HANGUP" or self.link.hung_up:
            return CallerHangup()
        if status not in ("OK", "TIMEOUT") or not _keys_ok(keys):
            raise ProtocolError(f"Read ended with status {status!r}")
        if not keys:
            return NoInput()
        reason: InputReason = ("max" if len(keys) >= wait.max_digits
                               else "terminator" if status == "OK" else "timeout")
        return Digits(keys[: wait.max_digits], reason)

    async def _stream_and_wait(self, media: tuple[Segment, ...], wait: Gather) -> Event:
        escape = ALL_KEYS if wait.barge_in else ""
        key: str | None = None
        for segment in media:
            stopped = await self.play(segment, escape)
            if stopped is None:
                return CallerHangup()
            if stopped:
                key = stopped
                break
        keys = ""
        timeout = wait.first_digit_timeout
        while True:
            if key is None:
                reply = await self.link.command(f"WAIT FOR DIGIT {round(timeout * 1000)}",
                                                timeout + MEDIA_SLACK)
                number = reply.number
                if number < 0 or reply.dead:
                    if await self._gone(reply):
                        return CallerHangup()
                    raise ProtocolError(f"WAIT FOR DIGIT failed: {reply.text!r}")
                if number == 0:
                    return Digits(keys, "timeout") if keys else NoInput()
                key = chr(number)
            if key not in ALL_KEYS:
                key = None  # A-D keys: not ours
                continue
            if wait.terminator and key in wait.terminator:
                return Digits(keys, "terminator") if keys else NoInput()
            keys += key
            key = None
            if len(keys) >= wait.max_digits:
                return Digits(keys, "max")
            timeout = wait.inter_digit_timeout


def _keys_ok(keys: str) -> bool:
    return all(k in ALL_KEYS for k in keys)


def describe_caller(info: CallInfo) -> str:
    return mask_phone(info.caller) if info.caller else "an unknown number"
