"""`sms`: send the caller (or another number) a text message, then go on.

Parameters:
  text      a prompt id: the message, in the call's language, placeholders filled (required)
  to        an expression giving the number (default: the caller's number, `caller`)
Outcomes:
  next      the provider took the message
  failed    no number, no messaging configured, or the provider refused it

The message must not carry a PIN or a full card or ID number; prompts only see
masked forms of secrets anyway.

    send_reference:
      sms: {text: transfer_sms}
      on: {next: anything_else, failed: anything_else}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ivr.engine.services import OutboundError
from ivr.engine.verbs.base import Await, Call, Go, Step, Verb, register
from ivr.flow import params as p
from ivr.flow.model import ExprRef, Node, PromptRef

log = logging.getLogger("ivr.sms")


@dataclass(frozen=True, kw_only=True)
class SmsParams:
    text: tuple[PromptRef, ...] = p.param(p.prompts, "a prompt id", doc="the message")
    to: ExprRef | None = p.param(p.expression, "an expression", default=None,
                                 doc="the number (default: the caller's)")


@register
class Sms(Verb[SmsParams]):
    name = "sms"
    Params = SmsParams
    uses_services = True
    outcomes = ("next", "failed")

    def run(self, node: Node, params: SmsParams, call: Call) -> Step:
        return Await(lambda: self._send(params, call))

    async def _send(self, params: SmsParams, call: Call) -> Step:
        scope = call.scope()
        number = params.to(scope) if params.to is not None else scope.get("caller")
        messenger = call.services.messenger
        if not number or messenger is None:
            log.warning("call %s: no SMS sent (%s)", call.call_id,
                        "no number" if not number else "no messaging configured")
            return Go("failed")
        body = "".join(call.prompt_text(ref) for ref in params.text)
        try:
            await messenger.send_sms(str(number), body)
        except OutboundError as exc:
            log.error("call %s: SMS not sent: %s", call.call_id, exc)
            return Go("failed")
        return Go("next")
