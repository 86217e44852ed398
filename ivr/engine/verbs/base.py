"""What every verb is, what it may ask of the call, and the verb registry.

A verb is a small class that names itself once and is registered with
`@register`. It declares its parameters as a frozen dataclass (see
`ivr.flow.params`), its outcomes, and whether it waits for the caller. The
interpreter calls `run` when the call reaches the node and `resume` with the
caller's event when a waiting node gets an answer; both return a Step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from ivr.engine.services import Services
from ivr.engine.state import AuthLevel
from ivr.engine.turn import Event, Gather, Hangup, Transfer
from ivr.flow.diagnostics import Pos
from ivr.flow.model import FlowSet, Node, PromptRef, Target
from ivr.flow.params import FileRef


class FlowRuntimeError(Exception):
    """A flow did something at run time that it cannot do; the call goes to an agent."""


# --- steps: what a verb tells the interpreter to do next --------------------


@dataclass(frozen=True)
class Go:
    """Follow one of the node's outcomes."""

    outcome: str


@dataclass(frozen=True)
class Wait:
    """Send the media played so far and wait for the caller's keys."""

    gather: Gather


@dataclass(frozen=True)
class End:
    """End the call: hang up or transfer, after the media played so far."""

    end: Hangup | Transfer


@dataclass(frozen=True)
class Enter:
    """Run a sub-flow; when it returns, this node's outcome is what it returned."""

    flow: str


@dataclass(frozen=True)
class Return:
    """Go back to the `call` node that entered this sub-flow, with an outcome."""

    outcome: str


@dataclass(frozen=True)
class Await:
    """Ask a service (the bank, the switch); `work` gives the next step when done.

    Only verbs that talk to services return this; the interpreter awaits `work()`
    and carries on with the step it returns. The call state is saved only at the
    next wait, so a service call and what follows it are one unit."""

    work: Callable[[], Awaitable[Step]]


Step = Go | Wait | End | Enter | Return | Await


class Call(Protocol):
    """What a verb may use of the call in progress. No telephony in here."""

    @property
    def language(self) -> str: ...

    @property
    def variables(self) -> dict[str, Any]: ...

    @property
    def secrets(self) -> dict[str, str]: ...

    def scope(self) -> Mapping[str, Any]:
        """Everything an expression may read: variables plus call facts."""
        ...

    def play(self, prompt: PromptRef) -> None:
        """Queue a prompt; it reaches the caller with the next wait or end."""
        ...

    def prompt_text(self, prompt: PromptRef) -> str:
        """A prompt's text in the call's language, its placeholders filled as a text
        message writes them (figures, not words: for SMS)."""
        ...

    def set_variable(self, name: str, value: Any) -> None: ...

    @property
    def call_id(self) -> str: ...

    @property
    def services(self) -> Services:
        """The bank and the switch, or a FlowRuntimeError when none were given."""
        ...

    @property
    def customer_id(self) -> int | None: ...

    @property
    def auth(self) -> AuthLevel: ...

    def identified(self, customer_id: int, level: AuthLevel) -> None:
        """Record who the caller is and how they proved it."""
        ...

    def idempotency_key(self, node: Node) -> str:
        """A key for a request made at this node in this turn: a retried turn gets the same."""
        ...

    def bump(self, name: str) -> int:
        """Count one more on a per-node counter (retries), kept in the state."""
        ...

    def reset(self, name: str) -> None: ...


P = TypeVar("P")


class Verb(Generic[P]):
    name: ClassVar[str]
    Params: ClassVar[type]
    #: the parameter a plain (non-mapping) value fills, as in `say: welcome`
    shorthand: ClassVar[str | None] = None
    #: outcomes every node of this verb must lead somewhere
    outcomes: ClassVar[tuple[str, ...]] = ("next",)
    #: True when every run of the verb waits for the caller before moving on
    waits: ClassVar[bool] = False
    #: True when the verb ends the call (no outcomes)
    ends_call: ClassVar[bool] = False
    #: True when the verb talks to the bank or the switch (it needs Services)
    uses_services: ClassVar[bool] = False

    def required_outcomes(self, params: P, flows: FlowSet | None = None) -> tuple[str, ...]:
        return self.outcomes

    def optional_outcomes(self, params: P) -> tuple[str, ...]:
        """Outcomes a node may handle separately; unhandled, they fall back to a required one."""
        return ()

    def option_targets(self, params: P) -> tuple[tuple[str, Target], ...]:
        """Outcomes whose targets are written inside the parameters (menu options)."""
        return ()

    def subflow(self, params: P) -> FileRef | None:
        """The path of the sub-flow this node enters, if any."""
        return None

    def problems(self, params: P, at: Mapping[str, Pos]) -> list[tuple[Pos, str]]:
        """Mistakes in how the parameters fit together, found when the flow loads.
        `at` gives where each parameter was written."""
        return []

    def run(self, node: Node, params: P, call: Call) -> Step:
        raise NotImplementedError

    def resume(self, node: Node, params: P, call: Call, event: Event) -> Step:
        raise NotImplementedError(f"verb '{self.name}' does not wait for the caller")


def take_secret(call: Call, name: str, verb: str) -> str:
    """The keys a secret `collect` put in `name` this turn, removed as they are taken."""
    if name not in call.secrets:
        raise FlowRuntimeError(f"'{name}' must be collected with `secret: true` in the same turn, "
                               f"just before {verb}")
    return call.secrets.pop(name)


REGISTRY: dict[str, Verb[Any]] = {}


def register(cls: type[Verb[Any]]) -> type[Verb[Any]]:
    """Class decorator: make a verb available to flows under its name."""
    if cls.name in REGISTRY:
        raise ValueError(f"verb '{cls.name}' is registered twice")
    REGISTRY[cls.name] = cls()
    return cls
