"""`collect`: ask for a number, check it, keep it in a variable.

Parameters:
  prompt               prompt id(s) that ask for the input (required)
  into                 the variable that receives the checked value (required)
  validate             luhn (card number), cn_resident_id (18 characters, `*` for X),
                       amount (`*` as the decimal point), digits, range (default digits)
  min_digits           fewest keys accepted (default 1)
  max_digits           most keys taken; input stops there (default 20)
  terminator           key that ends input early (default "#"; "" for none)
  timeout              seconds to wait for the first key (default 5)
  inter_digit_timeout  seconds to wait between keys (default 3)
  min_value, max_value bounds for `range` and `amount`
  retries              how many times to ask again after no or bad input (default 2)
  no_input_prompt      played before asking again when nothing was pressed
  invalid_prompt       played before asking again when the input failed its check
  secret               true for PINs: the keys are never stored in the call state,
                       shown or logged; they last until the next wait (default false)
Outcomes:
  next      the value is in `into`
  failed    retries spent

    ask_card:
      collect:
        prompt: enter_card_number
        into: card_number
        validate: luhn
        min_digits: 16
        max_digits: 19
        invalid_prompt: card_number_invalid
      on: {next: identify_card, failed: agent}
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from ivr.engine.turn import Digits, Event, Gather, NoInput
from ivr.engine.validators import VALIDATORS
from ivr.engine.verbs.base import Call, Go, Step, Verb, register
from ivr.engine.verbs.retry import ask, retry_or_fail
from ivr.flow import params as p
from ivr.flow.diagnostics import Pos
from ivr.flow.model import Node, PromptRef

_SHORTEST = {"luhn": 12, "cn_resident_id": 18}


@dataclass(frozen=True, kw_only=True)
class CollectParams:
    prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids")
    into: str = p.param(p.identifier, "a variable name")
    validate: str = p.param(p.choice(*VALIDATORS), "a validator", default="digits")
    min_digits: int = p.param(p.integer(1, 32), "a whole number", default=1)
    max_digits: int = p.param(p.integer(1, 32), "a whole number", default=20)
    terminator: str = p.param(p.keys, "telephone keys", default="#")
    timeout: float = p.param(p.seconds, "seconds", default=5.0)
    inter_digit_timeout: float = p.param(p.seconds, "seconds", default=3.0)
    min_value: int | None = p.param(p.integer(0, 10**12), "a whole number", default=None)
    max_value: int | None = p.param(p.integer(0, 10**12), "a whole number", default=None)
    retries: int = p.param(p.integer(0, 9), "a whole number", default=2)
    no_input_prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids", default=())
    invalid_prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids", default=())
    secret: bool = p.param(p.boolean, "true or false", default=False)

    @functools.cached_property
    def gather(self) -> Gather:
        """How the caller's keys are waited for (made once: the parameters do not change)."""
        return Gather(
            min_digits=self.min_digits,
            max_digits=self.max_digits,
            first_digit_timeout=self.timeout,
            inter_digit_timeout=self.inter_digit_timeout,
            terminator=self.terminator,
            secret=self.secret,
        )


@register
class Collect(Verb[CollectParams]):
    name = "collect"
    Params = CollectParams
    waits = True
    outcomes = ("next", "failed")

    def problems(self, params: CollectParams, at: Mapping[str, Pos]) -> list[tuple[Pos, str]]:
        def where(*names: str) -> Pos:
            return next((at[n] for n in names if n in at), params.prompt[0].pos)

        found = []
        if params.min_digits > params.max_digits:
            found.append((where("min_digits", "max_digits"),
                          f"min_digits ({params.min_digits}) is more than "
                          f"max_digits ({params.max_digits})"))
        shortest = _SHORTEST.get(params.validate)
        if shortest and params.max_digits < shortest:
            found.append((where("max_digits", "validate"),
                          f"{params.validate} needs max_digits of at least {shortest}"))
        if "*" in params.terminator and params.validate in ("amount", "cn_resident_id"):
            found.append((where("terminator"),
                          f"'*' cannot end input: {params.validate} uses it as a key"))
        if (params.min_value is not None and params.max_value is not None
                and params.min_value > params.max_value):
            found.append((where("min_value"), "min_value is more than max_value"))
        return found

    def run(self, node: Node, params: CollectParams, call: Call) -> Step:
        call.reset(node.id)
        return ask(call, params.prompt, params.gather)

    def resume(self, node: Node, params: CollectParams, call: Call, event: Event) -> Step:
        if isinstance(event, NoInput):
            apology = params.no_input_prompt
        elif isinstance(event, Digits):
            keys = event.keys
            if params.min_digits <= len(keys) <= params.max_digits:
                checked = VALIDATORS[params.validate](keys, params.min_value, params.max_value)
                if checked.ok:
                    call.reset(node.id)
                    if params.secret:
                        call.secrets[params.into] = checked.value
                    else:
                        call.set_variable(params.into, checked.value)
                    return Go("next")
            apology = params.invalid_prompt
        else:
            raise TypeError(f"collect cannot take {event!r}")
        return retry_or_fail(call, node, params.retries, apology, params.prompt, params.gather)
