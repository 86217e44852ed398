"""The verbs a flow can use. Each module registers one verb; add new ones here."""

from __future__ import annotations

from ivr.engine.verbs import (  # noqa: F401  (imported to register)
    authenticate,
    branch,
    call,
    collect,
    hangup,
    identify,
    menu,
    return_,
    say,
    set,
    sms,
    transact,
    transfer,
)
from ivr.engine.verbs.base import REGISTRY, Verb
from ivr.flow.model import FlowSet

__all__ = ["REGISTRY", "Verb", "uses_services"]


def uses_services(flows: FlowSet) -> bool:
    """Whether any node of `flows` talks to the bank, the switch or a messenger."""
    return any(REGISTRY[node.verb].uses_services
               for flow in flows.flows.values() for node in flow.nodes.values())
