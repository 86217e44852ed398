"""What the interpreter hands a channel (a Turn) and what it takes back (an Event).

A Turn is one unit of media and one wait. Channels play every segment of the
media as one interruptible unit and collect keys for the wait in the same
operation, so keys typed during the prompts are never lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Segment:
    """One prompt to play: its catalog id, language and text for this call, and the
    audio that says it: `parts`, ids of rendered files in order (a template prompt is
    its literal pieces around a composer's fragment words; empty means the prompt's
    own file). `complete` is False when some of the text has no audio (a value said
    as it is): a channel that can speak the text should prefer it then."""

    prompt: str
    language: str
    text: str
    parts: tuple[str, ...] = ()
    complete: bool = True

    @property
    def audio(self) -> tuple[str, ...]:
        return self.parts or (self.prompt,)


@dataclass(frozen=True)
class Gather:
    """Wait for keys. Timeouts are in seconds; `terminator` ends input early."""

    min_digits: int
    max_digits: int
    first_digit_timeout: float
    inter_digit_timeout: float
    terminator: str = "#"
    barge_in: bool = True
    secret: bool = False


@dataclass(frozen=True)
class Hangup:
    reason: str


@dataclass(frozen=True)
class Transfer:
    """Hand the call to an agent queue; `data` goes to the agent's screen."""

    queue: str
    data: Mapping[str, str] = field(default_factory=dict)
    reason: str = "transfer"


Wait = Gather | Hangup | Transfer


@dataclass(frozen=True)
class Turn:
    media: tuple[Segment, ...]
    wait: Wait

    @property
    def ended(self) -> bool:
        return not isinstance(self.wait, Gather)


# --- events: what the caller did -------------------------------------------

InputReason = Literal["complete", "terminator", "max", "timeout"]


@dataclass(frozen=True)
class Digits:
    """Keys collected for a Gather. `reason` says why collection stopped."""

    keys: str
    reason: InputReason = "complete"


@dataclass(frozen=True)
class NoInput:
    """The caller pressed nothing before the first-digit timeout."""


@dataclass(frozen=True)
class CallerHangup:
    """The caller hung up while the call was waiting."""


Event = Digits | NoInput | CallerHangup
