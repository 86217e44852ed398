"""The composers: amounts against cn2an's RMB reading, English through a parser of
our own, and every text made of exactly the fragments Asterisk will play."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

import cn2an
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.speech.say import KINDS, ComposeError, Style, compose, fragment_texts, vocabulary

CAPITALS = str.maketrans("零壹贰叁肆伍陆柒捌玖拾佰仟", "零一二三四五六七八九十百千")

amounts = st.integers(min_value=0, max_value=10**14).map(lambda fen: Decimal(fen).scaleb(-2))


def everyday(capital: str) -> str:
    """cn2an's capital-numeral RMB reading in everyday numerals; a leading 一十 is said 十."""
    text = capital.translate(CAPITALS)
    return "十" + text[2:] if text.startswith("一十") else text


@given(amounts)
@settings(max_examples=3000, deadline=None)
def test_mandarin_amounts_read_as_cn2an_reads_them(amount: Decimal) -> None:
    written = f"{amount:.2f}"
    assert compose("amount", written, "zh-CN").text == everyday(cn2an.an2cn(written, "rmb"))


@pytest.mark.parametrize(("amount", "text"), [
    ("10005.05", "一万零五元零五分"), ("0.30", "三角"), ("0.05", "五分"), ("10.00", "十元整"),
    ("20000.01", "二万元零一分"), ("1010.10", "一千零一十元一角"), ("0", "零元整"),
    ("100010", "十万零一十元整"), ("1000000000000", "一万亿元整"), ("-3.5", "负三元五角"),
])
def test_mandarin_amounts(amount: str, text: str) -> None:
    assert compose("amount", amount, "zh-CN").text == text


# --- a words-to-number parser, written for this test only ------------------------------

SMALL = {w: i for i, w in enumerate((
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
        "nineteen"))}
SMALL.update({"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
              "eighty": 80, "ninety": 90})
SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}


def parse_english_number(words: list[str]) -> int:
    total = current = 0
    for word in words:
        if word == "and":
            continue
        if word in SMALL:
            current += SMALL[word]
        elif word == "hundred":
            current *= 100
        elif word in SCALES:
            total += current * SCALES[word]
            current = 0
        else:
            raise ValueError(f"not a number word: {word}")
    return total + current


def parse_english_amount(text: str) -> Decimal:
    """'ten thousand and five yuan and five fen' -> Decimal('10005.05')."""
    words = text.replace("-", " ").split()
    sign = 1
    if words[:1] == ["minus"]:
        sign, words = -1, words[1:]
    yuan = fen = 0
    if "yuan" in words:
        cut = words.index("yuan")
        yuan, words = parse_english_number(words[:cut]), words[cut + 1:]
    if words:
        assert words[-1] == "fen", text
        fen = parse_english_number(words[:-1])
        assert 0 < fen < 100, text
    return sign * (Decimal(yuan) + Decimal(fen) / 100)


@given(amounts)
@settings(max_examples=3000, deadline=None)
def test_english_amounts_round_trip(amount: Decimal) -> None:
    text = compose("amount", f"{amount:.2f}", "en-US").text
    assert parse_english_amount(text) == amount
    # British "and" only before a last part under a hundred, never twice in a row
    words = text.split()
    assert words[0] != "and" and all(a != b for a, b in itertools.pairwise(words))


def test_english_amount_examples() -> None:
    assert compose("amount", "10005.05", "en-US").text == "ten thousand and five yuan and five fen"
    assert compose("amount", "0.30", "en-US").text == "thirty fen"
    assert compose("amount", "1.00", "en-US").text == "one yuan"
    assert compose("amount", "123.45", "en-US").text == \
        "one hundred and twenty-three yuan and forty-five fen"


@given(st.integers(min_value=-10**15, max_value=10**15))
@settings(max_examples=1000, deadline=None)
def test_integers_round_trip_in_english(n: int) -> None:
    words = compose("number", n, "en-US").text.replace("-", " ").split()
    sign = -1 if words[0] == "minus" else 1
    assert sign * parse_english_number(words[1:] if sign < 0 else words) == n


def parse_mandarin_integer(text: str) -> int:
    digits = {c: i for i, c in enumerate("零一二三四五六七八九")}
    total = section = current = 0
    for char in text:
        if char in digits:
            current = digits[char]
        elif char in "十百千":
            section += (current or 1) * {"十": 10, "百": 100, "千": 1000}[char]
            current = 0
        elif char == "万":
            section = (section + current) * 10_000
            total, section, current = total + section, 0, 0
        elif char == "亿":
            # 亿 multiplies everything said so far (一万亿 is 10^12)
            total = (total + section + current) * 10**8
            section = current = 0
    return total + section + current


@given(st.integers(min_value=0, max_value=10**16 - 1))
@settings(max_examples=1000, deadline=None)
def test_mandarin_integers_round_trip(n: int) -> None:
    assert parse_mandarin_integer(compose("number", n, "zh-CN").text) == n


@given(st.sampled_from(sorted(KINDS)), st.sampled_from(["zh-CN", "en-US"]),
       st.one_of(amounts.map(str), st.integers(0, 10**12).map(str), st.dates().map(str),
                 st.times().map(lambda t: t.strftime("%H:%M"))))
@settings(max_examples=2000, deadline=None)
def test_text_is_made_of_the_fragments_played(kind: str, language: str, value: str) -> None:
    try:
        spoken = compose(kind, value, language)
    except ComposeError:
        return
    pieces = list(fragment_texts(spoken, language))
    assert pieces and all(part in vocabulary(language) for part in spoken.parts)
    if language == "zh-CN":
        assert spoken.text == "".join(pieces)
    else:
        assert re.split(r"[ ,\-]+", spoken.text) == [w for p in pieces for w in p.split()]


def test_digits_and_the_bank_style_for_one() -> None:
    assert compose("digits", "1234", "zh-CN").text == "一二三四"
    assert compose("digits", "1234", "zh-CN", Style(one_as_yao=True)).text == "幺二三四"
    assert compose("digits", "1234", "zh-CN", Style(one_as_yao=True)).parts == ("yao", "n2", "n3", "n4")
    assert compose("digits", "1 2-3", "en-US").text == "one two three"


@pytest.mark.parametrize(("kind", "value", "zh", "en"), [
    ("date", "2026-12-07", "二零二六年十二月七日", "December seventh, twenty twenty-six"),
    ("date", "2005-01-31", "二零零五年一月三十一日", "January thirty-first, two thousand and five"),
    ("time", "14:30", "十四点三十分", "two thirty p.m."),
    ("time", "09:05", "九点零五分", "nine oh five a.m."),
    ("time", "00:00", "零点整", "twelve o'clock a.m."),
    ("percent", "3.25", "百分之三点二五", "three point two five percent"),
    ("rate", "7.1030", "七点一零三零", "seven point one zero three zero"),
    ("number", "-12", "负十二", "minus twelve"),
])
def test_dates_times_percentages_and_rates(kind: str, value: str, zh: str, en: str) -> None:
    assert compose(kind, value, "zh-CN").text == zh
    assert compose(kind, value, "en-US").text == en


@pytest.mark.parametrize(("kind", "value", "message"), [
    ("amount", "12.345", "more than two decimals"),
    ("amount", "twelve", "is not a number"),
    ("amount", "1e20", "too large"),
    ("amount", True, "expected a number"),
    ("number", "1.5", "not a whole number"),
    ("digits", "12a4", "not a string of digits"),
    ("digits", "6222021234567890123x", "'***************0123x'"),  # masked
    ("date", "07/12/2026", "not a date"),
    ("time", "25:00", "not a time"),
    ("colour", "1", "not a kind of value"),
])
def test_values_a_composer_cannot_read(kind: str, value: object, message: str) -> None:
    with pytest.raises(ComposeError, match=re.escape(message)):
        compose(kind, value, "zh-CN")


def test_a_language_without_composers() -> None:
    with pytest.raises(ComposeError, match="no composer reads numbers in fr-FR"):
        compose("amount", "1", "fr-FR")
