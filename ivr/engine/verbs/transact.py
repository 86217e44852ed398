"""`transact`: send a request to the central switch and branch on its answer.

Parameters:
  type      balance, recent, transfer, card_repayment, bill_payment, card_loss,
            fund_purchase, fx_quote or pin_change (required)
  with      the request's fields, as expressions (see below)
  pin       for pin_change: the variable a secret `collect` filled with the new PIN
  into      the variable that receives the answer (default `result`)
Fields by type:
  transfer        payee (the payee's number, 1-9), amount (yuan, "100.50")
  card_repayment  amount (yuan; leave out to repay the statement balance)
  bill_payment    biller (code), reference, amount
  card_loss       card_last4 (leave out to report every card)
  fund_purchase   fund (code), amount
  fx_quote        currency ("USD")
  recent          count (default 5)
Outcomes:
  next          approved; `into` holds the answer (amounts in yuan as text, numbers masked)
  declined      refused by the switch; `into.reason` says why
  unavailable   no answer from the switch: nothing is known to have happened
  and, optionally, one per decline reason: insufficient_funds, over_transaction_limit,
  over_daily_limit, payee_not_registered, account_not_available, card_not_found,
  card_blocked, nothing_to_repay, biller_not_found, fund_not_found,
  currency_not_quoted, invalid_amount, weak_pin, not_authenticated, reversed (the
  request was reversed after its answer was lost: nothing moved)

Money, balances and PIN changes need the PIN (`authenticate`); a card-loss report
needs only `identify`. Every request that moves money carries an idempotency key
made from the call, the node and the turn, so a retried request moves nothing twice.

    send_transfer:
      transact:
        type: transfer
        with: {payee: "payee", amount: "amount"}
      on: {next: transfer_done, declined: transfer_declined, unavailable: try_later,
           insufficient_funds: not_enough_money}
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ivr.engine.verbs.base import Await, Call, Go, Step, Verb, register, take_secret
from ivr.flow import params as p
from ivr.flow.diagnostics import Pos
from ivr.flow.model import ExprRef, Node
from ivr.switch import api

log = logging.getLogger("ivr.transact")

#: type -> (fields it takes, the auth level it needs)
TYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "balance": ((), "pin"),
    "recent": (("count",), "pin"),
    "transfer": (("payee", "amount"), "pin"),
    "card_repayment": (("amount",), "pin"),
    "bill_payment": (("biller", "reference", "amount"), "pin"),
    "card_loss": (("card_last4",), "identified"),
    "fund_purchase": (("fund", "amount"), "pin"),
    "fx_quote": (("currency",), "none"),
    "pin_change": ((), "pin"),
}
REQUIRED_FIELDS = {
    "transfer": ("payee", "amount"), "bill_payment": ("biller", "reference", "amount"),
    "fund_purchase": ("fund", "amount"), "fx_quote": ("currency",),
}
LEVELS = {"none": 0, "identified": 1, "pin": 2}


@dataclass(frozen=True, kw_only=True)
class TransactParams:
    type: str = p.param(p.choice(*TYPES), "a transaction type")
    fields: tuple[tuple[str, ExprRef], ...] = p.param(
        p.expression_map, "names to expressions", default=(), key="with")
    pin: str = p.param(p.identifier, "a variable name", default="")
    into: str = p.param(p.identifier, "a variable name", default="result")


class BadField(Exception):
    pass


def yuan_to_fen(value: Any) -> int:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BadField(f"'{value}' is not an amount") from None
    if amount != amount.quantize(Decimal("0.01")) or amount <= 0:
        raise BadField(f"'{value}' is not an amount of yuan and fen")
    return int(amount * 100)


def fen_text(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def answer_variables(result: Any) -> dict[str, Any]:
    """What a flow may read of an answer: amounts as yuan text, dates as ISO text."""
    out: dict[str, Any] = {"type": type(result).__name__}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if f.name in ("amount", "balance", "available", "balance_after",
                      "statement_balance_after", "buy", "sell"):
            value = fen_text(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = answer_variables(value)
        elif isinstance(value, tuple):
            value = [answer_variables(v) if dataclasses.is_dataclass(v) else str(v) for v in value]
        elif not isinstance(value, int | str | bool) and value is not None:
            value = str(value)
        out[f.name] = value
    if isinstance(result, api.Balances):
        out["total_available"] = fen_text(result.total_available)
    return out


@register
class Transact(Verb[TransactParams]):
    name = "transact"
    Params = TransactParams
    uses_services = True
    outcomes = ("next", "declined", "unavailable")

    def optional_outcomes(self, params: TransactParams) -> tuple[str, ...]:
        return tuple(str(d) for d in api.Decline)

    def problems(self, params: TransactParams, at: Mapping[str, Pos]) -> list[tuple[Pos, str]]:
        where = at.get("with", at.get("type"))
        allowed, _ = TYPES[params.type]
        found = []
        for name, expr in params.fields:
            if name not in allowed:
                listed = ", ".join(allowed) or "nothing"
                found.append((expr.pos, f"a {params.type} takes {listed}, not '{name}'"))
        given = {name for name, _ in params.fields}
        for name in REQUIRED_FIELDS.get(params.type, ()):
            if name not in given and where is not None:
                found.append((where, f"a {params.type} needs '{name}' under 'with'"))
        if params.type == "pin_change" and not params.pin and where is not None:
            found.append((where, "a pin_change needs 'pin': the variable holding the new PIN"))
        return found

    def run(self, node: Node, params: TransactParams, call: Call) -> Step:
        return Await(lambda: self._send(node, params, call))

    async def _send(self, node: Node, params: TransactParams, call: Call) -> Step:
        scope = call.scope()
        values = {name: expr(scope) for name, expr in params.fields}
        _, needed = TYPES[params.type]
        if LEVELS[call.auth] < LEVELS[needed] or (needed != "none" and call.customer_id is None):
            log.warning("call %s: %s refused, caller is only '%s'", call.call_id, params.type, call.auth)
            return self._declined(node, params, call, api.Decline.not_authenticated)
        try:
            request = self._request(node, params, call, values)
        except BadField as exc:
            log.info("call %s: %s not sent: %s", call.call_id, params.type, exc)
            return self._declined(node, params, call, api.Decline.invalid_amount)
        try:
            result = await call.services.switch.execute(request)
        except api.SwitchUnavailable as exc:
            log.error("call %s: switch unavailable for %s: %s", call.call_id, params.type, exc)
            call.set_variable(params.into, {"reason": "unavailable"})
            return Go("unavailable")
        if isinstance(result, api.Declined):
            return self._declined(node, params, call, result.reason)
        call.set_variable(params.into, answer_variables(result))
        return Go("next")

    def _declined(self, node: Node, params: TransactParams, call: Call, reason: api.Decline) -> Go:
        call.set_variable(params.into, {"reason": str(reason)})
        return Go(str(reason) if str(reason) in node.transitions else "declined")

    def _request(self, node: Node, params: TransactParams, call: Call,
                 values: dict[str, Any]) -> api.Request:
        customer = call.customer_id or 0
        key = call.idempotency_key(node)
        kind = params.type
        if kind == "balance":
            return api.BalanceInquiry(customer)
        if kind == "recent":
            return api.RecentTransactions(customer, int(values.get("count") or 5))
        if kind == "transfer":
            try:
                payee = int(values["payee"])
            except (TypeError, ValueError):
                raise BadField(f"payee '{values['payee']}' is not a number") from None
            return api.TransferToPayee(customer, key, payee, yuan_to_fen(values["amount"]))
        if kind == "card_repayment":
            amount = values.get("amount")
            return api.CardRepayment(customer, key, yuan_to_fen(amount) if amount else 0)
        if kind == "bill_payment":
            return api.BillPayment(customer, key, str(values["biller"]), str(values["reference"]),
                                   yuan_to_fen(values["amount"]))
        if kind == "card_loss":
            return api.CardLossReport(customer, key, str(values.get("card_last4") or ""))
        if kind == "fund_purchase":
            return api.FundPurchase(customer, key, str(values["fund"]), yuan_to_fen(values["amount"]))
        if kind == "fx_quote":
            return api.FxQuote(str(values["currency"]))
        return api.PinChange(customer, key, take_secret(call, params.pin, "pin_change"))
