"""`say`: play one prompt or several, then go on.

Parameters:
  prompt    a prompt id, or a list of ids played in order (required)
Outcomes:
  next      after the prompts are queued (they reach the caller with the next wait)

    welcome:
      say: [welcome, hotline_intro]
      next: main_menu
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.engine.verbs.base import Call, Go, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import Node, PromptRef


@dataclass(frozen=True, kw_only=True)
class SayParams:
    prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids", doc="what to play")


@register
class Say(Verb[SayParams]):
    name = "say"
    Params = SayParams
    shorthand = "prompt"

    def run(self, node: Node, params: SayParams, call: Call) -> Step:
        for ref in params.prompt:
            call.play(ref)
        return Go("next")
