"""`return`: leave this sub-flow; the `call` node goes on by the given outcome.

Parameters:
  outcome   the name of the caller's outcome to take (default `next`)
Outcomes: none here; the outcome belongs to the `call` node.

    done:
      return: {outcome: identified}
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.engine.verbs.base import Call, Return, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import Node


@dataclass(frozen=True, kw_only=True)
class ReturnParams:
    outcome: str = p.param(p.identifier, "an outcome name", default="next")


@register
class ReturnVerb(Verb[ReturnParams]):
    name = "return"
    Params = ReturnParams
    shorthand = "outcome"
    outcomes = ()

    def run(self, node: Node, params: ReturnParams, call: Call) -> Step:
        return Return(params.outcome)
