"""The console simulator: a call played in the terminal, scripted or interactive.

Each prompt is printed as `IVR: text`, each answer as `CALLER: keys`. With a
script, every entry answers one wait; an empty entry is no input. Keys beyond
what a wait takes (or after its terminator) are kept as type-ahead for the next
wait, as a real caller's would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ivr.engine.interpreter import Interpreter
from ivr.engine.state import CallState
from ivr.engine.turn import (
    CallerHangup,
    Digits,
    Event,
    Gather,
    Hangup,
    NoInput,
    Transfer,
    Turn,
)


@dataclass
class ConsoleResult:
    lines: list[str] = field(default_factory=list)
    end_reason: str = ""
    ended_normally: bool = False
    state: CallState | None = None


def read_keys(entry: str, gather: Gather) -> tuple[Event, str]:
    """Turn what the caller typed into the Event a phone would give, plus type-ahead."""
    if entry == "":
        return NoInput(), ""
    if gather.terminator:
        for i, ch in enumerate(entry):
            if ch in gather.terminator and i < gather.max_digits + 1:
                if i == 0:
                    return NoInput(), entry[1:]
                return Digits(entry[:i], "terminator"), entry[i + 1:]
            if i + 1 == gather.max_digits:
                return Digits(entry[: i + 1], "max"), entry[i + 1:]
        return Digits(entry, "timeout"), ""
    if len(entry) >= gather.max_digits:
        return Digits(entry[: gather.max_digits], "max"), entry[gather.max_digits:]
    return Digits(entry, "timeout"), ""


def _complete(entry: str, gather: Gather) -> bool:
    """Whether type-ahead alone already answers the wait."""
    if not entry:
        return False
    if gather.terminator and any(c in gather.terminator for c in entry):
        return True
    return len(entry) >= gather.max_digits


def describe_end(turn: Turn) -> str:
    wait = turn.wait
    if isinstance(wait, Transfer):
        data = ", ".join(f"{k}={v}" for k, v in wait.data.items())
        suffix = f" with {data}" if data else ""
        return f"END: transferred to queue '{wait.queue}' ({wait.reason}){suffix}"
    if isinstance(wait, Hangup):
        return f"END: hung up ({wait.reason})"
    raise TypeError(wait)


#: what the caller keys for a wait: an entry, or None to hang up
Answers = Iterator[str | None] | Callable[[Gather], str | None]


def play_call(interpreter: Interpreter, answers: Answers, **options: Any) -> ConsoleResult:
    """`play_call_async` for callers without an event loop of their own."""
    return asyncio.run(play_call_async(interpreter, answers, **options))


async def play_call_async(
    interpreter: Interpreter,
    answers: Answers,
    *,
    caller: str | None = None,
    language: str | None = None,
    call_id: str = "console",
    save_restore: bool = False,
    echo: Callable[[str], None] | None = None,
) -> ConsoleResult:
    """Run one call. `answers` yields each entry (or, called with the wait, returns
    it, so a terminal can hide a PIN as it is typed); None means the caller hangs up.

    With `save_restore`, the state goes through JSON at every wait, exactly as
    it does between two webhooks; the transcript must not change.
    """
    result = ConsoleResult()

    def say(line: str) -> None:
        result.lines.append(line)
        if echo is not None:
            echo(line)

    state = interpreter.start(call_id, caller=caller, language=language)
    turn = await interpreter.advance_async(state)
    type_ahead = ""
    while True:
        for segment in turn.media:
            say(f"IVR: {segment.text}")
        if not isinstance(turn.wait, Gather):
            say(describe_end(turn))
            result.end_reason = turn.wait.reason
            result.ended_normally = turn.wait.reason not in ("flow_error", "caller_hangup")
            break
        if save_restore:
            state = CallState.from_json(state.to_json())
        gather = turn.wait
        if _complete(type_ahead, gather):
            entry: str | None = type_ahead
        else:
            answer = answers(gather) if callable(answers) else next(answers, None)
            entry = None if answer is None else type_ahead + answer
        if entry is None:
            say("CALLER: (hangs up)")
            turn = await interpreter.advance_async(state, CallerHangup())
            say(describe_end(turn))
            result.end_reason = "caller_hangup"
            break
        event, type_ahead = read_keys(entry, gather)
        if isinstance(event, NoInput):
            say(f"CALLER: (no input; timed out after {gather.first_digit_timeout:g} s)")
        else:
            assert isinstance(event, Digits)
            shown = "*" * len(event.keys) if gather.secret else event.keys
            say(f"CALLER: {shown}")
        turn = await interpreter.advance_async(state, event)
    result.state = state
    return result
