"""The hotline's ISO 8583 (1987, ASCII) messages: the spec, framing, and the mapping
between the switch interface's typed requests and results and the wire.

`docs/iso8583.md` has the table of MTIs, processing codes, fields and response
codes; this module is that table in code. Every frame is a 2-byte big-endian length
followed by the message. A message that cannot be read raises `WireError` with a
plain reason; the caller decides whether the connection can go on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import iso8583
from iso8583.specs import default_ascii

from ivr.clock import BANK_TIMEZONE
from ivr.switch import api
from ivr.switch.api import Decline

MAX_FRAME = 8192

SPEC: dict[str, dict[str, Any]] = {**default_ascii}
# Request details (field 48) and result details (field 62) are UTF-8 JSON: payee
# and biller names are Chinese. Field 62 is long enough for a 20-line statement.
SPEC["48"] = {**default_ascii["48"], "data_enc": "utf-8"}
SPEC["62"] = {**default_ascii["62"], "data_enc": "utf-8", "len_type": 4, "max_len": 6000}

# Message type indicators.
AUTH, AUTH_RESPONSE = "0100", "0110"
FINANCIAL, FINANCIAL_RESPONSE = "0200", "0210"
REVERSAL, REVERSAL_REPEAT, REVERSAL_RESPONSE = "0420", "0421", "0430"
NETWORK, NETWORK_RESPONSE = "0800", "0810"
REQUESTS = (AUTH, FINANCIAL, REVERSAL, REVERSAL_REPEAT, NETWORK)

# Network management information codes (field 70).
SIGN_ON, SIGN_OFF, ECHO = "001", "002", "301"

CURRENCY_CNY = "156"


@dataclass(frozen=True)
class Kind:
    request: type
    mti: str
    processing_code: str


KINDS = (
    Kind(api.BalanceInquiry, AUTH, "310000"),
    Kind(api.RecentTransactions, AUTH, "380000"),
    Kind(api.FxQuote, AUTH, "930000"),
    Kind(api.TransferToPayee, FINANCIAL, "401000"),
    Kind(api.BillPayment, FINANCIAL, "501000"),
    Kind(api.CardRepayment, FINANCIAL, "501030"),
    Kind(api.FundPurchase, FINANCIAL, "941000"),
    Kind(api.CardLossReport, FINANCIAL, "910000"),
    Kind(api.PinChange, FINANCIAL, "920000"),
)
KIND_OF_REQUEST = {k.request: k for k in KINDS}
KIND_OF_CODE = {(k.mti, k.processing_code): k for k in KINDS}

APPROVED = "00"
INVALID_TRANSACTION = "12"
FORMAT_ERROR = "30"
SYSTEM_MALFUNCTION = "96"

RESPONSE_OF_DECLINE: dict[Decline, str] = {
    Decline.biller_not_found: "03",
    Decline.invalid_amount: "13",
    Decline.card_not_found: "14",
    Decline.payee_not_registered: "25",
    Decline.insufficient_funds: "51",
    Decline.account_not_available: "52",
    Decline.not_authenticated: "57",
    Decline.over_transaction_limit: "61",
    Decline.card_blocked: "62",
    Decline.over_daily_limit: "65",
    Decline.nothing_to_repay: "N1",
    Decline.fund_not_found: "N2",
    Decline.currency_not_quoted: "N3",
    Decline.weak_pin: "N4",
    Decline.reversed: "N5",
}
DECLINE_OF_RESPONSE = {code: reason for reason, code in RESPONSE_OF_DECLINE.items()}


class WireError(ValueError):
    """A frame or message that cannot be read; the reason says what was wrong."""


# --- framing --------------------------------------------------------------------


def frame(message: bytes) -> bytes:
    if not 0 < len(message) <= MAX_FRAME:
        raise WireError(f"a message of {len(message)} bytes does not fit a frame")
    return len(message).to_bytes(2, "big") + message


def frame_length(prefix: bytes) -> int:
    """The length a 2-byte prefix announces, refused outside 1..MAX_FRAME."""
    length = int.from_bytes(prefix, "big")
    if not 0 < length <= MAX_FRAME:
        raise WireError(f"bad frame length {length} (allowed 1 to {MAX_FRAME})")
    return length


# --- messages -------------------------------------------------------------------

Message = dict[str, str]


def encode(message: Message) -> bytes:
    try:
        data, _ = iso8583.encode(dict(message), SPEC)
    except iso8583.EncodeError as exc:
        raise WireError(f"cannot encode {message.get('t', '?')}: {exc}") from None
    return bytes(data)


def decode(data: bytes) -> Message:
    try:
        message, _ = iso8583.decode(data, SPEC)
    except iso8583.DecodeError as exc:
        raise WireError(f"unreadable message: {exc}") from None
    mti = message.get("t", "")
    if len(mti) != 4 or not mti.isdigit():
        raise WireError(f"bad message type {mti!r}")
    for field in ("3", "4", "7", "11", "70", "102"):
        if field in message and not (message[field].isascii() and message[field].isdigit()):
            raise WireError(f"field {field} is not numeric")
    return {k: v for k, v in message.items() if k not in ("p", "1")}


def readable_type(data: bytes) -> str | None:
    """The request type at the start of a message that failed to decode, if any."""
    mti = data[:4].decode("ascii", "replace")
    return mti if mti in REQUESTS else None


def response_mti(mti: str) -> str:
    """0200 -> 0210, 0421 -> 0430: the answer's type for a request's type."""
    return mti[:2] + str(int(mti[2]) + 1) + "0"


def stamp(at: dt.datetime) -> dict[str, str]:
    """Fields 7 (UTC), 12 and 13 (bank's local time)."""
    local = at.astimezone(BANK_TIMEZONE)
    return {"7": at.astimezone(dt.UTC).strftime("%m%d%H%M%S"),
            "12": local.strftime("%H%M%S"), "13": local.strftime("%m%d")}


def retrieval_reference(key: str) -> str:
    """Field 37 for a request: derived from its idempotency key, so a retransmission
    carries the same one; random for an enquiry."""
    if not key:
        return secrets.token_hex(6).upper()
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for _ in range(12):
        digest, digit = divmod(digest, 36)
        out.append(alphabet[digit])
    return "".join(out)


_PIN = re.compile(r"[0-9]{4,12}")


def pin_block(pin: str) -> str:
    """ISO 9564 format 1 PIN block (16 hex digits). Encrypting it under a zone PIN key
    is the security module's work on a production link."""
    if not _PIN.fullmatch(pin):
        raise WireError("a PIN is 4 to 12 digits")
    fill = secrets.token_hex(8).upper()
    return (f"1{len(pin):X}{pin}" + fill)[:16]


def pin_from_block(block: str) -> str:
    if len(block) != 16 or block[0] != "1":
        raise WireError("field 52 is not a format 1 PIN block")
    pin = block[2:2 + int(block[1], 16)]
    if not _PIN.fullmatch(pin):
        raise WireError("field 52 holds no PIN")
    return pin


def _details(request: api.Request) -> dict[str, Any]:
    if isinstance(request, api.RecentTransactions):
        return {"count": request.count}
    if isinstance(request, api.TransferToPayee):
        return {"payee": request.payee_position}
    if isinstance(request, api.BillPayment):
        return {"biller": request.biller_code, "bill": request.bill_reference}
    if isinstance(request, api.FundPurchase):
        return {"fund": request.fund_code}
    if isinstance(request, api.CardLossReport):
        return {"last4": request.card_last4}
    if isinstance(request, api.FxQuote):
        return {"currency": request.currency}
    return {}


def request_message(request: api.Request, stan: str, at: dt.datetime, terminal: str,
                    acquirer: str) -> Message:
    kind = KIND_OF_REQUEST[type(request)]
    key = getattr(request, "idempotency_key", "")
    message: Message = {
        "t": kind.mti, "3": kind.processing_code, "11": stan, **stamp(at), "32": acquirer,
        "37": retrieval_reference(key), "41": terminal, "49": CURRENCY_CNY,
    }
    customer = getattr(request, "customer_id", None)
    if customer is not None:
        message["102"] = str(customer)
    amount = getattr(request, "amount", None)
    if amount is not None:
        if not 0 <= amount < 10**12:
            raise WireError(f"amount {amount} does not fit field 4")
        message["4"] = f"{amount:012d}"
    details = _details(request)
    if key:
        details["key"] = key
    if details:
        message["48"] = json.dumps(details, ensure_ascii=False, separators=(",", ":"))
    if isinstance(request, api.PinChange):
        message["52"] = pin_block(request.new_pin)
    return message


def json_field(message: Mapping[str, str], field: str) -> dict[str, Any]:
    if field not in message:
        return {}
    try:
        value = json.loads(message[field])
    except ValueError:
        raise WireError(f"field {field} is not JSON") from None
    if not isinstance(value, dict):
        raise WireError(f"field {field} is not a JSON object")
    return value


def parse_request(message: Mapping[str, str]) -> api.Request:
    """The typed request a 0100 or 0200 carries; WireError names what is wrong."""
    kind = KIND_OF_CODE.get((message["t"], message.get("3", "")))
    if kind is None:
        raise WireError(f"no transaction {message['t']} with processing code {message.get('3')}")
    details = json_field(message, "48")
    try:
        customer = int(message["102"]) if "102" in message else 0
        amount = int(message.get("4", "0"))
        key = str(details.get("key", ""))
        cls = kind.request
        if cls is api.BalanceInquiry:
            return api.BalanceInquiry(customer)
        if cls is api.RecentTransactions:
            return api.RecentTransactions(customer, int(details.get("count", 5)))
        if cls is api.FxQuote:
            return api.FxQuote(str(details["currency"]))
        if not key:
            raise WireError("field 48 has no idempotency key")
        if cls is api.TransferToPayee:
            return api.TransferToPayee(customer, key, int(details["payee"]), amount)
        if cls is api.BillPayment:
            return api.BillPayment(customer, key, str(details["biller"]), str(details["bill"]), amount)
        if cls is api.CardRepayment:
            return api.CardRepayment(customer, key, amount)
        if cls is api.FundPurchase:
            return api.FundPurchase(customer, key, str(details["fund"]), amount)
        if cls is api.CardLossReport:
            return api.CardLossReport(customer, key, str(details.get("last4", "")))
        return api.PinChange(customer, key, pin_from_block(message.get("52", "")))
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"{kind.request.__name__} is missing or has a bad field: {exc}") from None


# --- results ----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def response_message(request: Message, result: api.Result) -> Message:
    answer: Message = {"t": response_mti(request["t"])}
    for field in ("3", "4", "7", "11", "12", "13", "32", "37", "41", "49", "102"):
        if field in request:
            answer[field] = request[field]
    if isinstance(result, api.Declined):
        answer["39"] = RESPONSE_OF_DECLINE[result.reason]
        if result.reference:
            answer["62"] = json.dumps({"reference": result.reference}, separators=(",", ":"))
        return answer
    answer["39"] = APPROVED
    reference = getattr(result, "reference", "")
    approval = reference[-6:].rjust(6, "0")
    if reference and approval.isascii() and approval.isalnum():
        answer["38"] = approval
    answer["62"] = json.dumps(_plain(result), ensure_ascii=False, separators=(",", ":"))
    return answer


def refusal(request: Message, code: str) -> Message:
    answer = {"t": response_mti(request["t"]), "39": code}
    for field in ("3", "11", "37", "41"):
        if field in request:
            answer[field] = request[field]
    return answer


_RESULT_OF_REQUEST: dict[type, type] = {
    api.BalanceInquiry: api.Balances, api.RecentTransactions: api.Statement,
    api.FxQuote: api.Quote, api.TransferToPayee: api.Transferred,
    api.BillPayment: api.BillPaid, api.CardRepayment: api.Repaid,
    api.FundPurchase: api.FundBought, api.CardLossReport: api.LossReported,
    api.PinChange: api.PinChanged,
}


class Refused(Exception):
    """The switch answered with a code that is not a decline of ours (12, 30, 96...)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def parse_result(request: api.Request, answer: Mapping[str, str]) -> api.Result:
    code = answer.get("39", "")
    details = json_field(answer, "62")
    if code in DECLINE_OF_RESPONSE:
        return api.Declined(DECLINE_OF_RESPONSE[code], str(details.get("reference", "")))
    if code != APPROVED:
        raise Refused(code)
    cls = _RESULT_OF_REQUEST[type(request)]
    try:
        if cls is api.Balances:
            return api.Balances(tuple(api.AccountBalance(**a) for a in details["accounts"]))
        if cls is api.Statement:
            return api.Statement(tuple(
                api.StatementLine(dt.date.fromisoformat(line["date"]), line["amount"], line["memo"])
                for line in details["lines"]))
        if cls is api.LossReported:
            return api.LossReported(details["reference"], tuple(details["cards"]),
                                    dt.date.fromisoformat(details["expires_on"]))
        result: api.Result = cls(**details)
        return result
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"field 62 does not describe a {cls.__name__}: {exc}") from None


def reversal_message(original: Message, stan: str, at: dt.datetime, repeat: bool) -> Message:
    """0420 (0421 when repeated) for `original`, naming it in field 90."""
    message: Message = {
        "t": REVERSAL_REPEAT if repeat else REVERSAL, "11": stan, **stamp(at),
        "90": (original["t"] + original["11"] + original["7"] + original["32"].rjust(11, "0")
               + "0" * 11),
    }
    for field in ("3", "4", "32", "37", "41", "48", "49", "102"):
        if field in original:
            message[field] = original[field]
    return message


def network_message(code: str, stan: str, at: dt.datetime) -> Message:
    return {"t": NETWORK, "7": stamp(at)["7"], "11": stan, "70": code}


def describe(message: Mapping[str, str]) -> str:
    """A log line's worth: type, STAN, processing code, response; no PII, no PIN."""
    parts = [message.get("t", "????"), f"stan={message.get('11', '-')}"]
    if "3" in message:
        parts.append(f"pc={message['3']}")
    if "39" in message:
        parts.append(f"rc={message['39']}")
    return " ".join(parts)
