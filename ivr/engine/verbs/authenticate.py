"""`authenticate`: check the identified customer's six-digit phone PIN.

Parameters:
  pin       the variable a `collect` with `secret: true` filled (required)
Outcomes:
  next      the PIN is right; money-moving transactions are now allowed
  wrong     the PIN is wrong; `pin_attempts_left` says how many tries remain
  locked    phone banking is locked (now, or already); only a branch or agent unlocks
  no_pin    the customer never set up phone banking (falls back to `locked`)

Comes after `identify`. Every attempt is audited; the digits never are.

    check_pin:
      authenticate: {pin: pin}
      on: {next: main_menu, wrong: ask_pin, locked: locked_out}
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.engine.verbs.base import Await, Call, FlowRuntimeError, Go, Step, Verb, register, take_secret
from ivr.engine.verbs.identify import bank_answering, fall_back
from ivr.flow import params as p
from ivr.flow.model import Node


@dataclass(frozen=True, kw_only=True)
class AuthenticateParams:
    pin: str = p.param(p.identifier, "a variable name")


@register
class Authenticate(Verb[AuthenticateParams]):
    name = "authenticate"
    Params = AuthenticateParams
    uses_services = True
    outcomes = ("next", "wrong", "locked")

    def optional_outcomes(self, params: AuthenticateParams) -> tuple[str, ...]:
        return ("no_pin",)

    def run(self, node: Node, params: AuthenticateParams, call: Call) -> Step:
        return Await(lambda: bank_answering(self._check(node, params, call)))

    async def _check(self, node: Node, params: AuthenticateParams, call: Call) -> Step:
        if call.customer_id is None:
            raise FlowRuntimeError("authenticate needs an identified customer; put identify first")
        pin = take_secret(call, params.pin, "authenticate")
        result = await call.services.bank.authenticate(call.customer_id, pin, call.call_id)
        if result.outcome == "ok":
            call.identified(call.customer_id, "pin")
            return Go("next")
        if result.outcome == "wrong":
            call.set_variable("pin_attempts_left", result.attempts_left)
            return Go("wrong")
        if result.outcome == "no_pin":
            return fall_back(node, "no_pin", "locked")
        return Go("locked")
