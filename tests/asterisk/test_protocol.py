"""The AGI wire format: replies as a real Asterisk 22 writes them, and our commands."""

from __future__ import annotations

import pytest

from ivr.channels.asterisk.call import CallInfo, pick_language, screen_value
from ivr.channels.asterisk.protocol import (
    ProtocolError,
    ReplyReader,
    parse_header,
    parse_header_block,
    parse_reply,
    quote,
)


@pytest.mark.parametrize(("line", "code", "result", "data", "endpos"), [
    ("200 result=0", 200, "0", None, None),
    ("200 result=53 endpos=13760", 200, "53", None, 13760),
    ("200 result=-1 endpos=0", 200, "-1", None, 0),
    ("200 result=1234", 200, "1234", None, None),
    ("200 result= (timeout)", 200, "", "timeout", None),
    ("200 result=78 (timeout)", 200, "78", "timeout", None),
    ("200 result=1 (with \"quotes\" and spaces)", 200, "1", "with \"quotes\" and spaces", None),
    ("200 result=1 (a (nested) value)", 200, "1", "a (nested) value", None),
    ("200 result=-2", 200, "-2", None, None),
    ("510 Invalid or unknown command", 510, "", None, None),
    ("511 Command Not Permitted on a dead channel or intercept routine", 511, "", None, None),
    ("520 Invalid command syntax.  Proper usage not available.", 520, "", None, None),
])
def test_replies_as_asterisk_writes_them(line: str, code: int, result: str, data: str | None,
                                         endpos: int | None) -> None:
    reply = parse_reply(line)
    assert (reply.code, reply.result, reply.data, reply.endpos) == (code, result, data, endpos)


def test_key_codes_and_timeouts() -> None:
    assert chr(parse_reply("200 result=53 endpos=13760").number) == "5"
    assert parse_reply("200 result= (timeout)").timed_out
    assert parse_reply("511 Command Not Permitted on a dead channel or intercept routine").dead


@pytest.mark.parametrize("line", ["HANGUP?", "garbage", "", "20 result=0", "abc result=1"])
def test_a_line_that_is_not_agi_is_refused(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_reply(line)


def test_reader_takes_hangup_as_news_not_as_an_answer() -> None:
    reader = ReplyReader()
    assert reader.feed("200 result=-1") is not None
    assert reader.feed("HANGUP") is None
    assert reader.hung_up
    reply = reader.feed("511 Command Not Permitted on a dead channel or intercept routine")
    assert reply is not None and reply.dead


def test_reader_reads_a_520_block_to_its_end() -> None:
    reader = ReplyReader()
    lines = ["520-Invalid command syntax.  Proper usage follows:",
             "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive",
             "    <value>SUCCESS</value>",
             "200 result=0 is not the end: it has no 520 code but looks like a reply",
             "520 End of proper usage."]
    replies = [reader.feed(line) for line in lines]
    # Every line but the last belongs to the block, including one that looks like a reply.
    assert replies[:-1] == [None] * 4
    last = replies[-1]
    assert last is not None and last.code == 520 and "Proper usage follows" in last.text
    assert reader.feed("200 result=0") == parse_reply("200 result=0")


def test_bytes_give_the_replies_their_text_gives() -> None:
    # The FastAGI link feeds bytes and keeps replies it has parsed: the second time a line
    # comes it must still be the same reply, and a block or a HANGUP must still be read
    # as one.
    lines = ["200 result=0 endpos=16000", "200 result=0 endpos=16000", "HANGUP",
             "200 result=1 (12#|OK)", "200 result=1 (12#|OK)", "520-Invalid command syntax.",
             "200 result=0 endpos=16000", "520 End of proper usage.", "200 result=0 endpos=16000",
             "200 result=49"]
    as_text, as_bytes = ReplyReader(), ReplyReader()
    for line in lines:
        assert as_bytes.feed_bytes(line.encode()) == as_text.feed(line)
    assert as_bytes.hung_up
    with pytest.raises(ProtocolError):
        as_bytes.feed_bytes(b"garbage")


def test_quote_escapes_as_asterisk_unescapes() -> None:
    assert quote('with "quotes" and spaces') == '"with \\"quotes\\" and spaces"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("") == '""'
    with pytest.raises(ValueError):
        quote("two\nlines")


def test_header_with_arguments_and_an_empty_value() -> None:
    header = parse_header(["agi_network: yes", "agi_network_script: hotline",
                           "agi_accountcode: ", "agi_arg_1: language=en_US", "agi_arg_2: x,y"])
    assert header["agi_accountcode"] == ""
    assert pick_language(header, ("zh-CN", "en-US")) == "en-US"
    with pytest.raises(ProtocolError):
        parse_header(["agi_network: yes", "not a header line"])


def test_a_header_read_in_one_go_is_the_header_read_line_by_line() -> None:
    lines = ["agi_network: yes", "agi_network_script: hotline", "agi_accountcode: ",
             "agi_callerid:8613800138000", "agi_calleridname: a: b (c) \ufffd", "agi_arg_1: x,y"]
    assert parse_header_block("".join(f"{line}\n" for line in lines)) == parse_header(lines)
    with pytest.raises(ProtocolError, match="not a header line"):
        parse_header_block("agi_network: yes\nnot a header line\n")
    with pytest.raises(ProtocolError, match="neither agi_network_script"):
        parse_header_block("")


@pytest.mark.parametrize(("channel", "expected"), [
    ("en", None),  # Asterisk's default on every channel: says nothing about the caller
    ("zh", "zh-CN"), ("zh_CN", "zh-CN"), ("en_US", "en-US"), ("en_GB", "en-US"), ("fr", None),
])
def test_channel_language(channel: str, expected: str | None) -> None:
    assert pick_language({"agi_language": channel}, ("zh-CN", "en-US")) == expected


def test_call_info_normalises_the_caller_and_makes_ids_unique() -> None:
    header = {"agi_network_script": "hotline", "agi_callerid": "8613800138000",
              "agi_uniqueid": "1795870864.4", "agi_channel": "SIP/trunk-00000001"}
    one = CallInfo.from_header(header, ("zh-CN",))
    two = CallInfo.from_header(header, ("zh-CN",))
    assert one.caller == "+8613800138000" and one.script == "hotline"
    assert one.call_id != two.call_id and one.call_id.startswith("agi-1795870864.4-")
    assert CallInfo.from_header({**header, "agi_callerid": "unknown"}, ("zh-CN",)).caller is None


def test_screen_values_never_carry_a_card_or_id_number() -> None:
    assert screen_value("card 6222021234567890123 lost") == "card ***************0123 lost"
    assert screen_value("11010519491231002X") == "**************002X"
    assert screen_value("two\nlines") == "two lines"
    assert screen_value("1234") == "1234"
