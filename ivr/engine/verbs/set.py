"""`set`: give variables new values, computed by expressions, then go on.

Parameters: each key is a variable name, each value an expression (text) or a
literal (number, true/false). The name `language` switches the call's language
to one the flow offers.
Outcomes:
  next

    count_attempt:
      set: {attempts: "attempts + 1", language: "'en-US'"}
      next: main_menu
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.engine.verbs.base import Call, Go, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import ExprRef, Node


@dataclass(frozen=True, kw_only=True)
class SetParams:
    values: tuple[tuple[str, ExprRef], ...] = p.param(p.expression_map, "names to expressions")


@register
class SetVerb(Verb[SetParams]):
    name = "set"
    Params = SetParams
    #: `set: {a: 1}` is read as the values themselves
    shorthand = "values"

    def run(self, node: Node, params: SetParams, call: Call) -> Step:
        # All right-hand sides see the variables as they were before this node.
        scope = call.scope()
        results = [(name, expr(scope)) for name, expr in params.values]
        for name, value in results:
            call.set_variable(name, value)
        return Go("next")
