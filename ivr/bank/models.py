"""The bank's tables (SQLAlchemy 2). Money is kept in minor units (fen) as integers.

Card and ID numbers are never stored: a keyed hash finds them and a masked form
shows them. Account numbers are routing data and kept, but shown masked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # the bank's customer number
    name: Mapped[str] = mapped_column(String(80))
    #: standard, vip or private
    segment: Mapped[str] = mapped_column(String(16), default="standard")
    language: Mapped[str] = mapped_column(String(16), default="zh-CN")
    #: closed customers are known but cannot use phone banking
    status: Mapped[str] = mapped_column(String(16), default="active")
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CustomerPhone(Base):
    __tablename__ = "customer_phones"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    e164: Mapped[str] = mapped_column(String(20), index=True)


class IdDocument(Base):
    __tablename__ = "id_documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24), default="cn_resident_id")
    number_hash: Mapped[str] = mapped_column(String(64), unique=True)
    masked: Mapped[str] = mapped_column(String(24))


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: None for the bank's own accounts (clearing, billers, funds)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    #: current, savings, credit (a card's account) or internal
    kind: Mapped[str] = mapped_column(String(16), default="current")
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    #: how far below zero the balance may go (a credit line); 0 for most accounts
    overdraft: Mapped[int] = mapped_column(BigInteger, default=0)
    #: active, frozen or closed
    status: Mapped[str] = mapped_column(String(16), default="active")


class Card(Base):
    __tablename__ = "cards"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    #: debit or credit
    kind: Mapped[str] = mapped_column(String(8))
    pan_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last4: Mapped[str] = mapped_column(String(4))
    masked: Mapped[str] = mapped_column(String(24))
    #: active, blocked, lost (temporary, see loss_expires_at) or closed
    status: Mapped[str] = mapped_column(String(16), default="active")
    credit_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    statement_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    loss_reported_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    loss_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Loan(Base):
    __tablename__ = "loans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    principal: Mapped[int] = mapped_column(BigInteger)
    outstanding: Mapped[int] = mapped_column(BigInteger)
    overdue_days: Mapped[int] = mapped_column(Integer, default=0)


class Payee(Base):
    """A payee the customer registered in a branch or online; phone transfers go only here."""

    __tablename__ = "payees"
    __table_args__ = (UniqueConstraint("customer_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    #: the number the caller keys to choose this payee (1-9)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(80))
    #: the account credited: a customer account here, or the clearing account for other banks
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    account_masked: Mapped[str] = mapped_column(String(32))
    bank: Mapped[str] = mapped_column(String(40), default="")


class PhoneCredential(Base):
    __tablename__ = "phone_credentials"
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    pin_hash: Mapped[str] = mapped_column(String(200))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Limit(Base):
    """Phone-transfer limits of one customer, in minor units."""

    __tablename__ = "limits"
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    per_transaction: Mapped[int] = mapped_column(BigInteger)
    daily: Mapped[int] = mapped_column(BigInteger)


class DailyUsage(Base):
    __tablename__ = "daily_usage"
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class Transaction(Base):
    """One request to the switch that moves money or changes a card, with its outcome."""

    __tablename__ = "transactions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    #: approved or declined
    status: Mapped[str] = mapped_column(String(16))
    decline: Mapped[str | None] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(24))
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class JournalLine(Base):
    """Double entry: the lines of one transaction sum to zero."""

    __tablename__ = "journal_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    #: positive credits the account, negative debits it
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(String(60), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


Index("ix_journal_account_time", JournalLine.account_id, JournalLine.id)


class FxRate(Base):
    __tablename__ = "fx_rates"
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    #: yuan per 100 units of the currency, in fen (the way Chinese banks quote)
    buy: Mapped[int] = mapped_column(BigInteger)
    sell: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Fund(Base):
    __tablename__ = "funds"
    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    #: net asset value per unit, in ten-thousandths of a yuan
    nav: Mapped[int] = mapped_column(BigInteger)
    settlement_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))


class FundHolding(Base):
    __tablename__ = "fund_holdings"
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    fund_code: Mapped[str] = mapped_column(ForeignKey("funds.code"), primary_key=True)
    #: units in ten-thousandths
    units: Mapped[int] = mapped_column(BigInteger, default=0)


class Biller(Base):
    __tablename__ = "billers"
    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))


class AuditEntry(Base):
    """Who did what on the phone; never PIN digits or full card or ID numbers."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SwitchReversal(Base):
    """A reversal the ISO 8583 client owes the switch, kept until acknowledged, so a
    process that stops (or crashes) with reversals outstanding leaves them to the
    next one. The message is the original request: no PIN, no card number."""

    __tablename__ = "switch_reversals"
    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    message: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(120), default="")
    queued_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)


class TwilioCall(Base):
    """A call served over Twilio webhooks: its state between two webhooks, in plain JSON
    (the digits a caller keyed for a secret never enter it)."""

    __tablename__ = "twilio_calls"
    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: the step whose answer the call waits for; each webhook answers one step
    step: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the step a worker is serving now, and since when (so a duplicate waits for it)
    claimed_step: Mapped[int | None] = mapped_column(Integer)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TwilioStep(Base):
    """The TwiML served for each step of a call, so a repeated webhook gets it again."""

    __tablename__ = "twilio_steps"
    call_sid: Mapped[str] = mapped_column(ForeignKey("twilio_calls.call_sid"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    twiml: Mapped[str] = mapped_column(Text)
