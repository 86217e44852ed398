"""`identify`: find the customer by what the caller keyed in, or hint by caller ID.

Parameters:
  by        card, resident_id, account, or caller_id (required)
  number    the variable that `collect` filled (kept secret or not); not used
            with caller_id
Outcomes:
  next            identified: `customer` holds the customer's masked view
                  (segment, language, name, payees, cards...). With caller_id the
                  customer is only a hint: `caller_hint` holds their language and
                  segment, and nothing is proved.
  not_identified  any of the four below that the node does not handle itself
  unknown         no such card, ID, account or registered phone
  invalid         the number fails its checksum or length
  closed          the customer, card or account is closed
  blocked         the card is blocked or reported lost, or the account is frozen

    find_by_card:
      identify: {by: card, number: card_number}
      on: {next: ask_pin, not_identified: card_not_found, blocked: card_blocked}
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from ivr.engine.verbs.base import Await, Call, FlowRuntimeError, Go, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import Node

REASONS = ("unknown", "invalid", "closed", "blocked")


@dataclass(frozen=True, kw_only=True)
class IdentifyParams:
    by: str = p.param(p.choice("card", "resident_id", "account", "caller_id"), "a way to identify")
    number: str = p.param(p.identifier, "a variable name", default="")


async def bank_answering(work: Awaitable[Step]) -> Step:
    """The step `work` gives; a bank that does not answer sends the call to an agent."""
    from ivr.bank.service import BankUnavailable

    try:
        return await work
    except BankUnavailable as exc:
        raise FlowRuntimeError(str(exc)) from exc


def fall_back(node: Node, outcome: str, general: str) -> Go:
    """The specific outcome when the node handles it, else the general one."""
    return Go(outcome if outcome in node.transitions else general)


@register
class Identify(Verb[IdentifyParams]):
    name = "identify"
    Params = IdentifyParams
    uses_services = True
    outcomes = ("next", "not_identified")

    def optional_outcomes(self, params: IdentifyParams) -> tuple[str, ...]:
        return REASONS

    def run(self, node: Node, params: IdentifyParams, call: Call) -> Step:
        return Await(lambda: bank_answering(self._identify(node, params, call)))

    async def _identify(self, node: Node, params: IdentifyParams, call: Call) -> Step:
        bank = call.services.bank
        if params.by == "caller_id":
            hinted = await bank.caller_hint(call.scope().get("caller"))
            if hinted is None:
                return fall_back(node, "unknown", "not_identified")
            view = await bank.customer_view(hinted)
            call.set_variable("caller_hint", {"language": view.language, "segment": view.segment})
            return Go("next")
        keys = call.secrets.get(params.number) or str(call.variables.get(params.number) or "")
        found = await bank.identify(params.by, keys, call.call_id)  # type: ignore[arg-type]
        from ivr.bank.service import Identified

        if not isinstance(found, Identified):
            call.set_variable("identify_failure", found.reason)
            return fall_back(node, found.reason, "not_identified")
        call.identified(found.customer_id, "identified")
        view = await bank.customer_view(found.customer_id)
        call.set_variable("customer", {**view.as_variables(), "identified_by": found.via,
                                       "identified_as": found.masked})
        return Go("next")
