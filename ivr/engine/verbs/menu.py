"""`menu`: play choices, take one key (or a few), go where the option leads.

Parameters:
  prompt            prompt id(s) that read the choices (required)
  options           keys to nodes, such as `"1": balance` (required)
  agent_key         the key that reaches an agent from this menu (default "0";
                    empty to switch off); its outcome is `agent`
  retries           how many times to ask again after no input or a wrong key (default 2)
  timeout           seconds to wait for the first key (default 5)
  no_input_prompt   played before asking again when nothing was pressed
  no_match_prompt   played before asking again when the key is not an option
Outcomes:
  one per option key; `agent`; `failed` (retries spent)

    main_menu:
      menu:
        prompt: main_menu
        options: {"1": balance, "2": transfer_money}
        no_input_prompt: sorry_no_input
        no_match_prompt: sorry_no_match
      on: {agent: agent, failed: agent}
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from ivr.engine.turn import Digits, Event, Gather, NoInput
from ivr.engine.verbs.base import Call, Go, Step, Verb, register
from ivr.engine.verbs.retry import ask, retry_or_fail
from ivr.flow import params as p
from ivr.flow.diagnostics import Pos
from ivr.flow.model import FlowSet, Node, PromptRef, Target


@dataclass(frozen=True, kw_only=True)
class MenuParams:
    prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids")
    options: tuple[tuple[str, Target], ...] = p.param(p.key_targets, "keys to nodes")
    agent_key: str = p.param(p.keys, "telephone keys", default="0")
    retries: int = p.param(p.integer(0, 9), "a whole number", default=2)
    timeout: float = p.param(p.seconds, "seconds", default=5.0)
    no_input_prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids", default=())
    no_match_prompt: tuple[PromptRef, ...] = p.param(p.prompts, "prompt ids", default=())

    @functools.cached_property
    def gather(self) -> Gather:
        """How the caller's keys are waited for (made once: the parameters do not change)."""
        longest = max(len(k) for k in [key for key, _ in self.options] + [self.agent_key])
        return Gather(
            min_digits=1,
            max_digits=longest,
            first_digit_timeout=self.timeout,
            inter_digit_timeout=2.0,
            terminator="#" if longest > 1 else "",
        )


@register
class Menu(Verb[MenuParams]):
    name = "menu"
    Params = MenuParams
    waits = True
    outcomes = ("failed",)

    def required_outcomes(self, params: MenuParams, flows: FlowSet | None = None) -> tuple[str, ...]:
        return ("agent", "failed") if params.agent_key else ("failed",)

    def option_targets(self, params: MenuParams) -> tuple[tuple[str, Target], ...]:
        return params.options

    def problems(self, params: MenuParams, at: Mapping[str, Pos]) -> list[tuple[Pos, str]]:
        for key, target in params.options:
            if key == params.agent_key:
                return [(target.key_pos or target.pos, f"option '{key}' is also the agent key; "
                         "set agent_key to another key or to ''")]
        return []

    def run(self, node: Node, params: MenuParams, call: Call) -> Step:
        call.reset(node.id)
        return ask(call, params.prompt, params.gather)

    def resume(self, node: Node, params: MenuParams, call: Call, event: Event) -> Step:
        if isinstance(event, Digits):
            for key, _target in params.options:
                if event.keys == key:
                    call.reset(node.id)
                    return Go(key)
            if params.agent_key and event.keys == params.agent_key:
                call.reset(node.id)
                return Go("agent")
            apology = params.no_match_prompt
        elif isinstance(event, NoInput):
            apology = params.no_input_prompt
        else:
            raise TypeError(f"menu cannot take {event!r}")
        return retry_or_fail(call, node, params.retries, apology, params.prompt, params.gather)
