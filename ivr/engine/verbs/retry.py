"""The bounded retry shared by verbs that wait: re-prompt, or give up with `failed`."""

from __future__ import annotations

from ivr.engine.turn import Gather
from ivr.engine.verbs.base import Call, Go, Step, Wait
from ivr.flow.model import Node, PromptRef


def retry_or_fail(
    call: Call,
    node: Node,
    retries: int,
    apology: tuple[PromptRef, ...],
    prompt: tuple[PromptRef, ...],
    gather: Gather,
) -> Step:
    """Count one failed attempt; ask again, or take `failed` once retries are spent."""
    attempts = call.bump(node.id)
    if attempts > retries:
        call.reset(node.id)
        return Go("failed")
    for ref in apology + prompt:
        call.play(ref)
    return Wait(gather)


def ask(call: Call, prompt: tuple[PromptRef, ...], gather: Gather) -> Step:
    for ref in prompt:
        call.play(ref)
    return Wait(gather)
