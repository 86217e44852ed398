"""The interpreter: `advance(state, event)` runs nodes until the call must wait.

It knows no verb by name: it asks the registry for the node's verb, runs it, and
follows the Step it returns. Media that verbs queue is buffered until the next
wait or end, so the channel can play it as one unit the caller can interrupt.
Runtime faults in a flow (an expression that fails, a loop that never waits) end
the call by transfer to the flow's fallback queue: a caller is never left in
silence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mypy_extensions import mypyc_attr

from ivr.engine.expr import ExpressionError
from ivr.engine.services import Services
from ivr.engine.state import AuthLevel, CallState, Frame, StateError
from ivr.engine.turn import CallerHangup, Event, Gather, Hangup, Segment, Transfer, Turn
from ivr.engine.verbs import REGISTRY
from ivr.engine.verbs.base import Await, End, Enter, FlowRuntimeError, Go, Return, Step, Wait
from ivr.flow.model import FlowSet, Node, PromptRef
from ivr.speech.catalog import Catalog

log = logging.getLogger("ivr.engine")

MAX_STEPS_PER_TURN = 1_000
MAX_SUBFLOW_DEPTH = 16
#: plain prompts' segments kept per interpreter (a catalog has a few hundred)
PLAIN_SEGMENTS = 8192


class CallEnded(Exception):
    """advance() was called for a call that has already ended."""


class NeedsServices(FlowRuntimeError):
    """advance() reached a verb that must await the bank or the switch; nothing of the
    turn happened (use advance_async)."""


class _Call:
    """What verbs see of the call while one turn is being computed."""

    __slots__ = ("_catalog", "_flows", "_media", "_plain", "_services", "_state", "secrets")

    def __init__(self, state: CallState, flows: FlowSet, catalog: Catalog | None,
                 services: Services | None, plain: dict[tuple[str, str], Segment]) -> None:
        self._state = state
        self._flows = flows
        self._catalog = catalog
        self._services = services
        #: the interpreter's segments of prompts with nothing to fill in, by (id, language)
        self._plain = plain
        self._media: list[Segment] = []
        self.secrets: dict[str, str] = {}

    @property
    def call_id(self) -> str:
        return self._state.call_id

    @property
    def services(self) -> Services:
        if self._services is None:
            raise FlowRuntimeError("this flow talks to the bank, but no bank was configured")
        return self._services

    @property
    def customer_id(self) -> int | None:
        return self._state.customer_id

    @property
    def auth(self) -> AuthLevel:
        return self._state.auth

    def identified(self, customer_id: int, level: AuthLevel) -> None:
        # A new identification replaces what an earlier one proved, PIN included.
        self._state.customer_id = customer_id
        self._state.auth = level

    def idempotency_key(self, node: Node) -> str:
        state = self._state
        return f"{state.call_id}:{state.flow}:{node.id}:{state.turns}"

    @property
    def language(self) -> str:
        return self._state.language

    @property
    def variables(self) -> dict[str, Any]:
        return self._state.variables

    def scope(self) -> Mapping[str, Any]:
        scope = dict(self._state.variables)
        for name, value in self.secrets.items():
            scope[name] = mask(value)
        scope["caller"] = self._state.caller
        scope["language"] = self._state.language
        return scope

    def prompt_text(self, prompt: PromptRef) -> str:
        if self._catalog is None:
            return f"[{prompt.id}]"
        return self._catalog.written(prompt.id, self._state.language, self.scope())

    def play(self, prompt: PromptRef) -> None:
        language = self._state.language
        key = (prompt.id, language)
        segment = self._plain.get(key)
        if segment is None:
            if self._catalog is None:
                segment = self._plain[key] = Segment(prompt.id, language, f"[{prompt.id}]")
            else:
                entry = self._catalog.entry(prompt.id, language)
                fields = entry is not None and entry.fields
                # a prompt with nothing to fill in needs no copy of the call's variables,
                # and is the same segment on every call
                spoken = self._catalog.render(prompt.id, language, self.scope() if fields else {})
                parts = spoken.parts if spoken.parts != (prompt.id,) else ()
                segment = Segment(prompt.id, language, spoken.text, parts, spoken.complete)
                if not fields and len(self._plain) < PLAIN_SEGMENTS:
                    self._plain[key] = segment
        self._media.append(segment)

    def set_variable(self, name: str, value: Any) -> None:
        if name == "language":
            offered = self._flows.flow(self._state.flow).languages
            if value not in offered:
                raise FlowRuntimeError(f"language '{value}' is not offered ({', '.join(offered)})")
            self._state.language = str(value)
            return
        self._state.variables[name] = _plain(value)

    def _counter_key(self, name: str) -> str:
        return f"{self._state.flow}:{name}"

    def bump(self, name: str) -> int:
        key = self._counter_key(name)
        self._state.counters[key] = self._state.counters.get(key, 0) + 1
        return self._state.counters[key]

    def reset(self, name: str) -> None:
        self._state.counters.pop(self._counter_key(name), None)

    def take_media(self) -> tuple[Segment, ...]:
        media, self._media = tuple(self._media), []
        return media


def mask(value: str) -> str:
    """What flows may see of a secret: the last four of a long number, else nothing."""
    if len(value) >= 12:
        return "*" * (len(value) - 4) + value[-4:]
    return "*" * len(value)


def _plain(value: Any) -> Any:
    """Keep variables JSON-serialisable: anything else is stored as its text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class _Paused:
    """A turn stopped at a verb's service call: `work` gives the verb's next step."""

    __slots__ = ("call", "node", "taken", "work")

    def __init__(self, call: _Call, node: Node, work: Callable[[], Awaitable[Step]], taken: int) -> None:
        self.call = call
        self.node = node
        self.work = work
        self.taken = taken


# Tests and tools may subclass it (to record turns), also when it is compiled.
@mypyc_attr(allow_interpreted_subclasses=True)
class Interpreter:
    """Runs the flows of one FlowSet; holds no per-call data itself."""

    def __init__(self, flows: FlowSet, catalog: Catalog | None = None,
                 services: Services | None = None) -> None:
        self.flows = flows
        self.catalog = catalog
        self.services = services
        #: where a call goes when its flow fails at run time (the main flow says)
        self.fallback_queue = flows.entry.fallback_queue
        self._plain_segments: dict[tuple[str, str], Segment] = {}

    def start(
        self, call_id: str, caller: str | None = None, language: str | None = None
    ) -> CallState:
        entry = self.flows.entry
        lang = language if language in entry.languages else entry.language
        return CallState(call_id=call_id, flow=entry.id, node=entry.start,
                         language=lang, caller=caller)

    def advance(self, state: CallState, event: Event | None = None) -> Turn:
        """Run the call on from `state` with the caller's `event`; update `state`.

        For flows that use no services (bank, switch); `advance_async` runs any flow.
        `state` is changed only when the turn is complete, so a failure leaves it
        as it was.
        """
        work = self._begin(state)
        done = self._open(work, event)
        if type(done) is Turn:
            return self._commit(state, work, done)
        raise NeedsServices("this turn talks to the bank; run it with advance_async")

    async def advance_async(self, state: CallState, event: Event | None = None) -> Turn:
        """`advance` for any flow, awaiting the bank and the switch where a verb asks."""
        work = self._begin(state)
        done = self._open(work, event)
        while type(done) is not Turn:
            assert isinstance(done, _Paused)
            try:
                step = await done.work()
            except (ExpressionError, FlowRuntimeError) as exc:  # the turn's own fault
                done = self._fault(work, done.call, exc)
            else:
                done = self._walk(work, done.call, done.node, step, done.taken)
        return self._commit(state, work, done)

    def _begin(self, state: CallState) -> CallState:
        if state.status == "ended":
            raise CallEnded(f"call {state.call_id} has already ended ({state.end_reason})")
        return state.copy()

    @staticmethod
    def _commit(state: CallState, work: CallState, turn: Turn) -> Turn:
        work.turns += 1
        state.take(work)
        return turn

    # A turn is computed by plain calls rather than a generator: most turns never await
    # anything, and a call to the bank leaves the turn `_Paused` at the verb that asked.

    def _open(self, state: CallState, event: Event | None) -> Turn | _Paused:
        """The turn's first step: the call's start, or the waiting node's answer."""
        call = _Call(state, self.flows, self.catalog, self.services, self._plain_segments)
        if isinstance(event, CallerHangup):
            state.status = "ended"
            state.end_reason = "caller_hangup"
            return Turn((), Hangup("caller_hangup"))
        try:
            node = self._node(state)
            if state.status == "new":
                if event is not None:
                    raise StateError("a new call takes no event; call advance(state) first")
                step = self._run(node, call)
            else:
                if event is None:
                    raise StateError("a waiting call needs the caller's event to go on")
                step = REGISTRY[node.verb].resume(node, node.params, call, event)
        except (ExpressionError, FlowRuntimeError) as exc:
            return self._fault(state, call, exc)
        return self._walk(state, call, node, step, 0)

    def _walk(self, state: CallState, call: _Call, node: Node, step: Step,
              taken: int) -> Turn | _Paused:
        """Follow steps from `node` until the call waits or ends (a Turn), or a verb asks a
        service (paused there; `taken` counts the steps so far)."""
        try:
            while taken < MAX_STEPS_PER_TURN:
                taken += 1
                if isinstance(step, Await):
                    return _Paused(call, node, step.work, taken)
                if isinstance(step, Wait):
                    state.status = "waiting"
                    return Turn(call.take_media(), step.gather)
                if isinstance(step, End):
                    state.status = "ended"
                    state.end_reason = step.end.reason
                    return Turn(call.take_media(), step.end)
                node = self._follow(state, node, step)
                state.steps += 1
                step = self._run(node, call)
            raise FlowRuntimeError(
                f"more than {MAX_STEPS_PER_TURN} steps without waiting for the caller"
            )
        except (ExpressionError, FlowRuntimeError) as exc:
            return self._fault(state, call, exc)

    def _fault(self, state: CallState, call: _Call, exc: Exception) -> Turn:
        """A runtime fault in the flow: the call goes to the fallback queue."""
        log.warning("flow fault in %s at %s/%s: %s", state.call_id, state.flow, state.node, exc)
        state.status = "ended"
        state.end_reason = "flow_error"
        media = call.take_media()
        where = f"{state.flow}/{state.node}"
        return Turn(media, Transfer(self.fallback_queue, {"fault": where}, "flow_error"))

    def _node(self, state: CallState) -> Node:
        flow = self.flows.flows.get(state.flow)
        if flow is None or state.node not in flow.nodes:
            raise StateError(
                f"call {state.call_id} is at {state.flow}/{state.node}, which the loaded "
                "flows do not have (were the flows changed during the call?)"
            )
        return flow.nodes[state.node]

    def _run(self, node: Node, call: _Call) -> Step:
        return REGISTRY[node.verb].run(node, node.params, call)

    def _follow(self, state: CallState, node: Node, step: Step) -> Node:
        """Move the call to the node a step leads to."""
        if isinstance(step, Go):
            target = node.transitions[step.outcome]
            state.node = target.node
            return self._node(state)
        if isinstance(step, Enter):
            if len(state.stack) >= MAX_SUBFLOW_DEPTH:
                raise FlowRuntimeError(f"sub-flows nested more than {MAX_SUBFLOW_DEPTH} deep")
            state.stack.append(Frame(state.flow, state.node))
            state.flow = step.flow
            state.node = self.flows.flow(step.flow).start
            return self._node(state)
        if isinstance(step, Return):
            if not state.stack:
                raise FlowRuntimeError("'return' in the main flow: there is nothing to return to")
            frame = state.stack.pop()
            state.flow, state.node = frame.flow, frame.node
            caller_node = self._node(state)
            if step.outcome not in caller_node.transitions:
                raise FlowRuntimeError(
                    f"call node '{caller_node.id}' has no outcome '{step.outcome}'"
                )
            return self._follow(state, caller_node, Go(step.outcome))
        raise TypeError(f"unexpected step {step!r}")


__all__ = ["CallEnded", "FlowRuntimeError", "Gather", "Interpreter", "Turn"]
