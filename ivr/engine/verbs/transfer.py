"""`transfer`: hand the call to an agent queue, with data for the agent's screen.

Parameters:
  queue     the agent queue's name (required)
  prompt    prompt id(s) to play first, such as "please hold" (optional)
  data      names to expressions; their values go to the agent's screen (optional).
            Never put a PIN or a full card or ID number here.
Outcomes: none; the call leaves the flow.

    agent:
      transfer:
        queue: cards
        prompt: transferring
        data: {reason: "'card_lost'", menu: "last_menu"}
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.engine.expr import ExpressionError
from ivr.engine.turn import Transfer as TransferEnd
from ivr.engine.verbs.base import Call, End, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import ExprRef, Node, PromptRef


@dataclass(frozen=True, kw_only=True)
class TransferParams:
    queue: str = p.param(p.identifier, "a queue name")
    prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids", default=())
    data: tuple[tuple[str, ExprRef], ...] = p.param(
        p.expression_map, "names to expressions", default=()
    )


@register
class TransferVerb(Verb[TransferParams]):
    name = "transfer"
    Params = TransferParams
    shorthand = "queue"
    outcomes = ()
    ends_call = True

    def run(self, node: Node, params: TransferParams, call: Call) -> Step:
        for ref in params.prompt:
            call.play(ref)
        scope = call.scope()
        data: dict[str, str] = {}
        for name, expr in params.data:
            try:
                value = expr(scope)
            except ExpressionError:
                # The caller must still reach the agent; the screen shows a gap.
                value = None
            data[name] = "" if value is None else str(value)
        return End(TransferEnd(params.queue, data))
