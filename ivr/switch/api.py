"""The switch interface: typed requests, typed results, typed declines.

A request that moves money or changes a card carries an idempotency key: the
same key twice returns the first result and moves nothing. A decline is an
answer ("insufficient funds"); `SwitchUnavailable` means there was no answer,
and for a money-moving request the caller must not be told it succeeded.
Amounts are in minor units (fen). Results hold only what may be shown or
spoken: masked numbers, never a full card number or a PIN.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Decline(StrEnum):
    insufficient_funds = "insufficient_funds"
    over_transaction_limit = "over_transaction_limit"
    over_daily_limit = "over_daily_limit"
    payee_not_registered = "payee_not_registered"
    account_not_available = "account_not_available"
    card_not_found = "card_not_found"
    card_blocked = "card_blocked"
    nothing_to_repay = "nothing_to_repay"
    biller_not_found = "biller_not_found"
    fund_not_found = "fund_not_found"
    currency_not_quoted = "currency_not_quoted"
    invalid_amount = "invalid_amount"
    weak_pin = "weak_pin"
    not_authenticated = "not_authenticated"
    #: the request was reversed after its answer was lost: nothing moved
    reversed = "reversed"


class SwitchUnavailable(Exception):
    """No answer from the switch (down, timed out). Nothing is known to have happened."""


class OutcomeUnknown(SwitchUnavailable):
    """A money-moving request got no answer in time, so a reversal was sent.

    `reversed` is True once the switch acknowledged the reversal (nothing moved);
    False while the reversal is still being retried. Never a success.
    """

    def __init__(self, message: str, reversed: bool) -> None:
        super().__init__(message)
        self.reversed = reversed


# --- requests ---------------------------------------------------------------


@dataclass(frozen=True)
class BalanceInquiry:
    customer_id: int


@dataclass(frozen=True)
class RecentTransactions:
    customer_id: int
    count: int = 5


@dataclass(frozen=True)
class TransferToPayee:
    customer_id: int
    idempotency_key: str
    payee_position: int
    amount: int


@dataclass(frozen=True)
class CardRepayment:
    """Repay the customer's credit card from their current account; 0 means the statement balance."""

    customer_id: int
    idempotency_key: str
    amount: int = 0


@dataclass(frozen=True)
class BillPayment:
    customer_id: int
    idempotency_key: str
    biller_code: str
    bill_reference: str
    amount: int


@dataclass(frozen=True)
class CardLossReport:
    """Report cards lost; `card_last4` picks one card, empty reports every active card."""

    customer_id: int
    idempotency_key: str
    card_last4: str = ""


@dataclass(frozen=True)
class FundPurchase:
    customer_id: int
    idempotency_key: str
    fund_code: str
    amount: int


@dataclass(frozen=True)
class FxQuote:
    currency: str


@dataclass(frozen=True)
class PinChange:
    customer_id: int
    idempotency_key: str
    new_pin: str = field(repr=False)


Request = (
    BalanceInquiry | RecentTransactions | TransferToPayee | CardRepayment | BillPayment
    | CardLossReport | FundPurchase | FxQuote | PinChange
)

MONEY_MOVING = (TransferToPayee, CardRepayment, BillPayment, FundPurchase)


# --- results ----------------------------------------------------------------


@dataclass(frozen=True)
class AccountBalance:
    account: str  # masked
    kind: str
    currency: str
    balance: int
    available: int


@dataclass(frozen=True)
class Balances:
    accounts: tuple[AccountBalance, ...]

    @property
    def total_available(self) -> int:
        return sum(a.available for a in self.accounts if a.kind != "credit")


@dataclass(frozen=True)
class StatementLine:
    date: dt.date
    amount: int
    memo: str


@dataclass(frozen=True)
class Statement:
    lines: tuple[StatementLine, ...]


@dataclass(frozen=True)
class Transferred:
    reference: str
    amount: int
    payee_name: str
    payee_account: str  # masked
    balance_after: int


@dataclass(frozen=True)
class Repaid:
    reference: str
    amount: int
    statement_balance_after: int


@dataclass(frozen=True)
class BillPaid:
    reference: str
    amount: int
    biller_name: str


@dataclass(frozen=True)
class LossReported:
    reference: str
    cards: tuple[str, ...]  # masked
    expires_on: dt.date


@dataclass(frozen=True)
class FundBought:
    reference: str
    amount: int
    fund_name: str
    units: int  # ten-thousandths


@dataclass(frozen=True)
class Quote:
    currency: str
    buy: int  # fen per 100 units
    sell: int


@dataclass(frozen=True)
class PinChanged:
    reference: str


@dataclass(frozen=True)
class Declined:
    reason: Decline
    reference: str = ""


Result = (
    Balances | Statement | Transferred | Repaid | BillPaid | LossReported | FundBought
    | Quote | PinChanged | Declined
)


class Switch(Protocol):
    async def execute(self, request: Request) -> Result:
        """Carry out one request. Raises SwitchUnavailable when there is no answer."""
        ...


# --- storing results, so a replayed request gets the first answer back -----

_STORED: dict[str, type] = {
    cls.__name__: cls
    for cls in (Transferred, Repaid, BillPaid, LossReported, FundBought, PinChanged, Declined)
}


def encode_result(result: Result) -> dict[str, object]:
    data: dict[str, object] = {"type": type(result).__name__}
    for name, value in vars(result).items():
        if isinstance(value, dt.date):
            data[name] = value.isoformat()
        elif isinstance(value, tuple):
            data[name] = list(value)
        else:
            data[name] = str(value) if isinstance(value, Decline) else value
    return data


def decode_result(data: dict[str, object]) -> Result:
    cls = _STORED[str(data["type"])]
    # Keys starting with "_" are the ledger's own notes (what a reversal must undo).
    values = {k: v for k, v in data.items() if k != "type" and not k.startswith("_")}
    if cls is LossReported:
        values["expires_on"] = dt.date.fromisoformat(str(values["expires_on"]))
        values["cards"] = tuple(values["cards"])  # type: ignore[arg-type]
    if cls is Declined:
        values["reason"] = Decline(str(values["reason"]))
    result: Result = cls(**values)
    return result
