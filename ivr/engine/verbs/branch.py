"""`branch`: go to the first case whose expression is true, else to `next`.

Parameters: a list of cases, each `if: EXPRESSION` and `goto: NODE`.
Outcomes:
  next      no case was true

    route_by_segment:
      branch:
        - {if: "segment == 'private'", goto: private_menu}
        - {if: "segment == 'vip'", goto: vip_menu}
      next: standard_menu
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.engine.verbs.base import Call, Go, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import Node, Target


@dataclass(frozen=True, kw_only=True)
class BranchParams:
    cases: tuple[p.Case, ...] = p.param(p.cases, "a list of cases")


def case_outcome(index: int) -> str:
    return f"case {index + 1}"


@register
class Branch(Verb[BranchParams]):
    name = "branch"
    Params = BranchParams
    shorthand = "cases"

    def option_targets(self, params: BranchParams) -> tuple[tuple[str, Target], ...]:
        return tuple((case_outcome(i), c.goto) for i, c in enumerate(params.cases))

    def run(self, node: Node, params: BranchParams, call: Call) -> Step:
        scope = call.scope()
        for i, case in enumerate(params.cases):
            if case.when(scope):
                return Go(case_outcome(i))
        return Go("next")
