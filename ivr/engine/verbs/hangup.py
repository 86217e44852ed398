"""`hangup`: play an optional goodbye and end the call.

Parameters:
  prompt    prompt id(s) to play before hanging up (optional)
  reason    a word for the call record, such as `completed` (default `completed`)
Outcomes: none; the call ends.

    goodbye:
      hangup: {prompt: goodbye, reason: completed}
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.engine.turn import Hangup as HangupEnd
from ivr.engine.verbs.base import Call, End, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import Node, PromptRef


@dataclass(frozen=True, kw_only=True)
class HangupParams:
    prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids", default=())
    reason: str = p.param(p.identifier, "a word", default="completed")


@register
class HangupVerb(Verb[HangupParams]):
    name = "hangup"
    Params = HangupParams
    shorthand = "prompt"
    outcomes = ()
    ends_call = True

    def run(self, node: Node, params: HangupParams, call: Call) -> Step:
        for ref in params.prompt:
            call.play(ref)
        return End(HangupEnd(params.reason))
