"""Every request and result survives the trip through ISO 8583 messages unchanged."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.switch import api
from ivr.switch.iso8583 import messages as m

AT = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)
ids = st.integers(1, 10**9)
keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=120)
fen = st.integers(0, 10**12 - 1)
words = st.text(max_size=30)
masked = st.from_regex(r"\*{12}[0-9]{4}", fullmatch=True)

requests = st.one_of(
    st.builds(api.BalanceInquiry, ids),
    st.builds(api.RecentTransactions, ids, st.integers(1, 20)),
    st.builds(api.TransferToPayee, ids, keys, st.integers(1, 99), fen),
    st.builds(api.CardRepayment, ids, keys, fen),
    st.builds(api.BillPayment, ids, keys, words, words, fen),
    st.builds(api.CardLossReport, ids, keys, st.from_regex(r"([0-9]{4})?", fullmatch=True)),
    st.builds(api.FundPurchase, ids, keys, words, fen),
    st.builds(api.FxQuote, st.from_regex(r"[A-Z]{3}", fullmatch=True)),
    st.builds(api.PinChange, ids, keys, st.from_regex(r"[0-9]{4,12}", fullmatch=True)),
)


@given(requests)
def test_requests_cross_the_wire_unchanged(request: api.Request) -> None:
    message = m.request_message(request, "000042", AT, "IVR00001", "00000001")
    assert m.parse_request(m.decode(m.encode(message))) == request


dates = st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31))
signed = st.integers(-(10**12), 10**12)
answers = st.one_of(
    st.tuples(st.just(api.BalanceInquiry(1)), st.builds(api.Balances, st.lists(st.builds(
        api.AccountBalance, masked, st.sampled_from(["current", "credit"]), st.just("CNY"),
        signed, signed), max_size=4).map(tuple))),
    st.tuples(st.just(api.RecentTransactions(1)), st.builds(api.Statement, st.lists(st.builds(
        api.StatementLine, dates, signed, st.text(max_size=60)), max_size=20).map(tuple))),
    st.tuples(st.just(api.TransferToPayee(1, "k", 1, 1)),
              st.builds(api.Transferred, st.from_regex(r"[0-9]{12}", fullmatch=True), fen, words,
                        masked, signed)),
    st.tuples(st.just(api.CardLossReport(1, "k")),
              st.builds(api.LossReported, st.from_regex(r"[0-9]{12}", fullmatch=True),
                        st.lists(masked, max_size=3).map(tuple), dates)),
    st.tuples(st.just(api.FxQuote("USD")), st.builds(api.Quote, st.just("USD"), fen, fen)),
    st.tuples(st.just(api.PinChange(1, "k", "1234")), st.builds(api.PinChanged, words)),
    st.tuples(st.just(api.TransferToPayee(1, "k", 1, 1)),
              st.builds(api.Declined, st.sampled_from(list(api.Decline)), st.just(""))),
)


@given(answers)
def test_results_cross_the_wire_unchanged(pair: tuple[api.Request, api.Result]) -> None:
    request, result = pair
    asked = m.decode(m.encode(m.request_message(request, "000042", AT, "IVR00001", "00000001")))
    answer = m.decode(m.encode(m.response_message(asked, result)))
    assert answer["11"] == "000042" and answer["37"] == asked["37"]
    assert m.parse_result(request, answer) == result


def test_every_decline_has_its_own_response_code() -> None:
    assert set(m.RESPONSE_OF_DECLINE) == set(api.Decline)
    assert len(set(m.RESPONSE_OF_DECLINE.values())) == len(api.Decline)
    assert not set(m.RESPONSE_OF_DECLINE.values()) & {m.APPROVED, m.INVALID_TRANSACTION,
                                                       m.FORMAT_ERROR, m.SYSTEM_MALFUNCTION}


def test_retransmissions_carry_the_same_reference_and_the_pin_is_not_in_the_log() -> None:
    first = m.request_message(api.PinChange(7, "call-9/x/3", "864209"), "000001", AT, "T", "1")
    again = m.request_message(api.PinChange(7, "call-9/x/3", "864209"), "000002", AT, "T", "1")
    assert first["37"] == again["37"] and len(first["37"]) == 12
    assert "864209" not in m.describe(first) and "864209" not in repr(api.PinChange(7, "k", "864209"))


@pytest.mark.parametrize(("data", "says"), [
    (b"", "unreadable message"),
    (b"02", "unreadable message"),
    (b"ABCD" + b"0" * 16, "bad message type"),
    (b"0200" + b"F" * 16, "unreadable message"),
])
def test_unreadable_messages_say_why(data: bytes, says: str) -> None:
    with pytest.raises(m.WireError, match=says):
        m.decode(data)


@pytest.mark.parametrize("length", [0, m.MAX_FRAME + 1, 65535])
def test_frame_lengths_outside_the_limit_are_refused(length: int) -> None:
    with pytest.raises(m.WireError, match="bad frame length"):
        m.frame_length(length.to_bytes(2, "big"))
