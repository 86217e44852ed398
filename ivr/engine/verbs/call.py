"""`call`: run a sub-flow from another file; its `return` picks this node's outcome.

Parameters:
  flow      the sub-flow's file, relative to this one (`.yaml` may be left out)
Outcomes:
  every outcome the sub-flow's `return` nodes give (`next` by default)

Variables are shared: what the sub-flow sets, the caller's flow sees.

    identify_caller:
      call: {flow: identify}
      on: {identified: main_menu, failed: agent}
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.engine.verbs.base import Call, Enter, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import FlowSet, Node


@dataclass(frozen=True, kw_only=True)
class CallParams:
    flow: p.FileRef = p.param(p.flow_path, "a flow file")
    #: the sub-flow's id, filled in by the loader once the file is read
    flow_id: str = ""


def return_outcomes(flows: FlowSet, flow_id: str) -> tuple[str, ...]:
    """The outcomes a flow's `return` nodes can give, in the order written."""
    seen: dict[str, None] = {}
    for node in flows.flow(flow_id).nodes.values():
        outcome = getattr(node.params, "outcome", None)
        if node.verb == "return" and isinstance(outcome, str):
            seen[outcome] = None
    return tuple(seen)


@register
class CallVerb(Verb[CallParams]):
    name = "call"
    Params = CallParams
    shorthand = "flow"

    def required_outcomes(self, params: CallParams, flows: FlowSet | None = None) -> tuple[str, ...]:
        if flows is None or params.flow_id not in flows.flows:
            return ()
        return return_outcomes(flows, params.flow_id)

    def subflow(self, params: CallParams) -> p.FileRef | None:
        return params.flow

    def run(self, node: Node, params: CallParams, call: Call) -> Step:
        return Enter(params.flow_id)
