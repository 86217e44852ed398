"""Composers: how the engine reads out amounts, numbers, digit strings, dates, times,
percentages and exchange rates, in Mandarin and English.

Each composer gives a `Spoken`: the words as text (for Twilio's `<Say>` and the
console) and the same words as a sequence of fragment ids, each one pre-rendered
word of the language's vocabulary (`vocabulary(language)`), so that Asterisk can
play a balance from files without rendering anything during the call. The text is
always the fragments' texts joined, so what the console shows is what the caller
hears.

    compose("amount", "10005.05", "zh-CN").text   -> 一万零五元零五分
    compose("amount", "10005.05", "en-US").text   -> ten thousand and five yuan and five fen

Mandarin amounts follow the reading of an RMB amount written in capitals (cn2an's
`rmb` mode, in everyday numerals): 整 after whole yuan, 零 for a gap, no 零元 before
角 and 分. English amounts use British "and" before the last part under a hundred.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

#: the largest amount or number the composers read (under ten thousand trillion)
LIMIT = 10**16


class ComposeError(ValueError):
    """A value the composer cannot read out, with what was expected."""


@dataclass(frozen=True)
class Spoken:
    text: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Style:
    """How a bank wants some things said (per language, from the catalog's `_style`)."""

    one_as_yao: bool = False  # digit strings read 1 as 幺 (Mandarin)


@dataclass
class _Words:
    """Builds a Spoken from vocabulary words, checking each one exists."""

    vocab: dict[str, str]
    sep: str
    parts: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)

    def add(self, *words: str, joiner: str | None = None) -> _Words:
        texts = [self.vocab[w] for w in words]  # a KeyError here is a bug in a composer
        self.parts.extend(words)
        self.chunks.append((self.sep if joiner is None else joiner).join(texts))
        return self

    def extend(self, spoken: Spoken) -> _Words:
        self.parts.extend(spoken.parts)
        self.chunks.append(spoken.text)
        return self

    def done(self) -> Spoken:
        return Spoken(self.sep.join(c for c in self.chunks if c), tuple(self.parts))


# --- values --------------------------------------------------------------------------

def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise ComposeError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str):
        text = str(value).strip().replace(",", "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ComposeError(f"{what}: '{value}' is not a number") from None
    else:
        raise ComposeError(f"{what}: expected a number, got {type(value).__name__}")
    if not number.is_finite():
        raise ComposeError(f"{what}: '{value}' is not a number")
    if abs(number) >= LIMIT:
        raise ComposeError(f"{what}: {value} is too large to read out")
    return number


def _fen(value: Any) -> int:
    """An amount of yuan (text like "12.30", a Decimal or an int) as whole fen."""
    number = _decimal(value, "amount")
    fen = number * 100
    if fen != fen.to_integral_value():
        raise ComposeError(f"amount: {value} has more than two decimals (fen)")
    return int(fen)


def _integer(value: Any) -> int:
    number = _decimal(value, "number")
    if number != number.to_integral_value():
        raise ComposeError(f"number: {value} is not a whole number")
    return int(number)


def _digit_string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ComposeError(f"digits: expected a string of digits, got {type(value).__name__}")
    text = re.sub(r"[\s-]", "", str(value))
    if not text or not all("0" <= c <= "9" for c in text):
        raise ComposeError(f"digits: '{_safe(str(value))}' is not a string of digits 0-9")
    return text


def _safe(text: str) -> str:
    """A rejected value for an error message: long digit runs (card or ID numbers) masked."""
    return re.sub(r"\d{5,}", lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], text)[:40]


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise ComposeError(f"date: '{value}' is not a date (YYYY-MM-DD)")


def _time(value: Any) -> tuple[int, int]:
    if isinstance(value, dt.datetime | dt.time):
        return value.hour, value.minute
    if isinstance(value, str):
        clock = r"(?:\d{4}-\d{2}-\d{2}[T ])?(\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?"
        match = re.fullmatch(clock, value.strip())
        if match and int(match.group(1)) < 24 and int(match.group(2)) < 60:
            return int(match.group(1)), int(match.group(2))
    raise ComposeError(f"time: '{value}' is not a time (HH:MM)")


def _fraction_digits(number: Decimal) -> str:
    """The digits after the point as written (trailing zeros kept: 7.10 reads 七点一零)."""
    text = format(abs(number), "f")
    return text.split(".", 1)[1] if "." in text else ""


# --- Mandarin ------------------------------------------------------------------------

ZH_VOCAB: dict[str, str] = {
    **{f"n{d}": c for d, c in enumerate("零一二三四五六七八九")},
    "yao": "幺", "liang": "两", "shi": "十", "bai": "百", "qian": "千", "wan": "万", "yi": "亿",
    "yuan": "元", "jiao": "角", "fen": "分", "zheng": "整", "dian": "点",
    "percent": "百分之", "minus": "负", "nian": "年", "yue": "月", "ri": "日",
    "cur_CNY": "人民币", "cur_USD": "美元", "cur_EUR": "欧元", "cur_HKD": "港币",
    "cur_JPY": "日元", "cur_GBP": "英镑", "cur_AUD": "澳大利亚元", "cur_CAD": "加拿大元",
    "cur_SGD": "新加坡元", "cur_CHF": "瑞士法郎",
}


def _zh_under_10k(n: int, words: list[str], leading: bool) -> None:
    """1..9999 as words; `leading` when nothing bigger comes before (一十 becomes 十)."""
    units = ((1000, "qian"), (100, "bai"), (10, "shi"), (1, ""))
    gap = False
    started = False
    for size, unit in units:
        digit = n // size % 10
        if digit == 0:
            gap = started
            continue
        if gap:
            words.append("n0")
            gap = False
        if not (unit == "shi" and digit == 1 and leading and not started):
            words.append(f"n{digit}")
        if unit:
            words.append(unit)
        started = True


def zh_integer_words(n: int) -> list[str]:
    """A whole number 0 <= n < 10^16 as Mandarin words: 10005 -> 一万零五."""
    if n == 0:
        return ["n0"]
    groups = []  # groups of four digits, lowest first
    while n:
        groups.append(n % 10000)
        n //= 10000
    # group index -> unit: 1 万, 2 亿, 3 万亿
    unit_words: tuple[list[str], ...] = ([], ["wan"], ["yi"], ["wan", "yi"])
    words: list[str] = []
    pending_zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            pending_zero = bool(words)
            continue
        if words and (pending_zero or group < 1000):
            words.append("n0")
        _zh_under_10k(group, words, leading=not words)
        pending_zero = False
        if index == 3 and groups[2] == 0:
            words.extend(["wan", "yi"])
        elif index == 3:
            words.append("wan")
        else:
            words.extend(unit_words[index])
    return words


def _zh_number(n: int) -> list[str]:
    return (["minus"] if n < 0 else []) + zh_integer_words(abs(n))


def _zh_amount(value: Any, style: Style) -> Spoken:
    fen = _fen(value)
    w = _Words(ZH_VOCAB, "")
    if fen < 0:
        w.add("minus")
        fen = -fen
    yuan, jiao, cents = fen // 100, fen // 10 % 10, fen % 10
    if yuan:
        w.add(*zh_integer_words(yuan), "yuan")
    if jiao == 0 and cents == 0:
        return (w.add("zheng") if yuan else w.add("n0", "yuan", "zheng")).done()
    if jiao:
        w.add(f"n{jiao}", "jiao")
    if cents:
        if yuan and not jiao:
            w.add("n0")
        w.add(f"n{cents}", "fen")
    return w.done()


def _zh_decimal(number: Decimal) -> list[str]:
    words = _zh_number(int(number))
    if number < 0 and int(number) == 0:
        words = ["minus", "n0"]
    fraction = _fraction_digits(number)
    if fraction:
        words.append("dian")
        words.extend(f"n{d}" for d in fraction)
    return words


def _zh_digits(value: Any, style: Style) -> Spoken:
    digits = _digit_string(value)
    return _Words(ZH_VOCAB, "").add(*("yao" if d == "1" and style.one_as_yao else f"n{d}"
                                      for d in digits)).done()


def _zh_date(value: Any, style: Style) -> Spoken:
    day = _date(value)
    w = _Words(ZH_VOCAB, "")
    w.add(*(f"n{d}" for d in f"{day.year:04d}"), "nian")
    w.add(*zh_integer_words(day.month), "yue")
    return w.add(*zh_integer_words(day.day), "ri").done()


def _zh_time(value: Any, style: Style) -> Spoken:
    hour, minute = _time(value)
    w = _Words(ZH_VOCAB, "").add(*zh_integer_words(hour), "dian")
    if minute == 0:
        return w.add("zheng").done()
    if minute < 10:
        w.add("n0")
    return w.add(*zh_integer_words(minute), "fen").done()


def _zh_percent(value: Any, style: Style) -> Spoken:
    number = _decimal(value, "percent")
    return _Words(ZH_VOCAB, "").add("percent", *_zh_decimal(number)).done()


def _zh_rate(value: Any, style: Style) -> Spoken:
    return _Words(ZH_VOCAB, "").add(*_zh_decimal(_decimal(value, "rate"))).done()


def _zh_integer(value: Any, style: Style) -> Spoken:
    n = _integer(value)
    # a count of two is 两 (再试两次); amounts and longer numbers keep 二
    return _Words(ZH_VOCAB, "").add(*(["liang"] if n == 2 else _zh_number(n))).done()


# --- English -------------------------------------------------------------------------

_EN_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
_EN_TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy",
            80: "eighty", 90: "ninety"}
_EN_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
_EN_ORDINALS = (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
    "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
    "eighteenth", "nineteenth", "twentieth",
)

EN_VOCAB: dict[str, str] = {
    **{f"n{i}": word for i, word in enumerate(_EN_ONES)},
    **{f"n{i}": word for i, word in _EN_TENS.items()},
    "hundred": "hundred", "thousand": "thousand", "million": "million", "billion": "billion",
    "trillion": "trillion", "and": "and", "yuan": "yuan", "fen": "fen", "point": "point",
    "percent": "percent", "minus": "minus", "oh": "oh", "am": "a.m.", "pm": "p.m.",
    "oclock": "o'clock",
    **{f"month{i + 1}": name for i, name in enumerate(_EN_MONTHS)},
    **{f"ord{i + 1}": word for i, word in enumerate(_EN_ORDINALS)},
    "ord30": "thirtieth",
    "cur_CNY": "yuan", "cur_USD": "US dollars", "cur_EUR": "euros", "cur_HKD": "Hong Kong dollars",
    "cur_JPY": "Japanese yen", "cur_GBP": "British pounds", "cur_AUD": "Australian dollars",
    "cur_CAD": "Canadian dollars", "cur_SGD": "Singapore dollars", "cur_CHF": "Swiss francs",
}


def _en_under_100(n: int, w: _Words) -> None:
    if n < 20 or n % 10 == 0:
        w.add(f"n{n}")
    else:
        w.add(f"n{n - n % 10}", f"n{n % 10}", joiner="-")


def _en_under_1000(n: int, w: _Words, and_first: bool) -> None:
    hundreds, rest = divmod(n, 100)
    if hundreds:
        w.add(f"n{hundreds}", "hundred")
        if rest:
            w.add("and")
    elif and_first and rest:
        w.add("and")
    if rest:
        _en_under_100(rest, w)


def en_integer(n: int, w: _Words) -> None:
    """A whole number 0 <= n < 10^16 in British English: 10005 -> ten thousand and five."""
    if n == 0:
        w.add("n0")
        return
    rest = n
    for size, scale in _EN_SCALES:
        if rest >= size:
            _en_under_1000(rest // size, w, and_first=False)
            w.add(scale)
            rest %= size
    if rest:
        _en_under_1000(rest, w, and_first=rest < n and rest < 100)


def _en_words() -> _Words:
    return _Words(EN_VOCAB, " ")


def _en_number(n: int, w: _Words) -> None:
    if n < 0:
        w.add("minus")
    en_integer(abs(n), w)


def _en_amount(value: Any, style: Style) -> Spoken:
    fen = _fen(value)
    w = _en_words()
    if fen < 0:
        w.add("minus")
        fen = -fen
    yuan, cents = divmod(fen, 100)
    if yuan or not cents:
        en_integer(yuan, w)
        w.add("yuan")
    if cents:
        if yuan:
            w.add("and")
        _en_under_100(cents, w)
        w.add("fen")
    return w.done()


def _en_decimal(number: Decimal, w: _Words) -> None:
    if number < 0:
        w.add("minus")
    en_integer(abs(int(number)), w)
    fraction = _fraction_digits(number)
    if fraction:
        w.add("point", *(f"n{d}" for d in fraction))


def _en_digits(value: Any, style: Style) -> Spoken:
    return _en_words().add(*(f"n{d}" for d in _digit_string(value))).done()


def _en_ordinal(n: int, w: _Words) -> None:
    if n <= 20 or n == 30:
        w.add(f"ord{n}")
    else:
        w.add(f"n{n - n % 10}", f"ord{n % 10}", joiner="-")


def _en_year(year: int, w: _Words) -> None:
    high, low = divmod(year, 100)
    if 2000 <= year <= 2009:  # two thousand and five
        en_integer(year, w)
    elif low == 0:  # nineteen hundred
        _en_under_100(high, w)
        w.add("hundred")
    else:  # twenty twenty-six, nineteen oh five
        _en_under_100(high, w)
        if low < 10:
            w.add("oh", f"n{low}")
        else:
            _en_under_100(low, w)


def _en_date(value: Any, style: Style) -> Spoken:
    day = _date(value)
    w = _en_words().add(f"month{day.month}")
    _en_ordinal(day.day, w)
    w.chunks[-1] += ","
    _en_year(day.year, w)
    return w.done()


def _en_time(value: Any, style: Style) -> Spoken:
    hour, minute = _time(value)
    w = _en_words()
    _en_under_100(hour % 12 or 12, w)
    if minute == 0:
        w.add("oclock")
    elif minute < 10:
        w.add("oh", f"n{minute}")
    else:
        _en_under_100(minute, w)
    return w.add("am" if hour < 12 else "pm").done()


def _en_percent(value: Any, style: Style) -> Spoken:
    w = _en_words()
    _en_decimal(_decimal(value, "percent"), w)
    return w.add("percent").done()


def _en_rate(value: Any, style: Style) -> Spoken:
    w = _en_words()
    _en_decimal(_decimal(value, "rate"), w)
    return w.done()


def _en_integer(value: Any, style: Style) -> Spoken:
    w = _en_words()
    _en_number(_integer(value), w)
    return w.done()


def _currency(vocab: dict[str, str]) -> Composer:
    def compose_currency(value: Any, style: Style) -> Spoken:
        code = str(value).strip().upper() if isinstance(value, str) else ""
        if f"cur_{code}" not in vocab:
            known = sorted(k[4:] for k in vocab if k.startswith("cur_"))
            raise ComposeError(f"currency: '{value}' is not a currency code the bank quotes "
                               f"({', '.join(known)})")
        return _Words(vocab, " ").add(f"cur_{code}").done()
    return compose_currency


# --- the registry --------------------------------------------------------------------

Composer = Callable[[Any, Style], Spoken]

#: what each kind reads, for error messages and `ivr prompts say --help`
KINDS: dict[str, str] = {
    "amount": "yuan and fen (\"10005.05\")",
    "number": "a whole number (\"42\")",
    "digits": "a digit string, digit by digit (\"1234\")",
    "date": "a date (\"2026-12-07\")",
    "time": "a time of day (\"14:30\")",
    "percent": "a percentage (\"3.25\" is 3.25 %)",
    "rate": "a decimal such as an exchange rate (\"7.1234\")",
    "currency": "a currency by its ISO code (\"USD\")",
}

_COMPOSERS: dict[str, tuple[dict[str, str], dict[str, Composer]]] = {
    "zh": (ZH_VOCAB, {"amount": _zh_amount, "number": _zh_integer, "digits": _zh_digits,
                      "date": _zh_date, "time": _zh_time, "percent": _zh_percent,
                      "rate": _zh_rate, "currency": _currency(ZH_VOCAB)}),
    "en": (EN_VOCAB, {"amount": _en_amount, "number": _en_integer, "digits": _en_digits,
                      "date": _en_date, "time": _en_time, "percent": _en_percent,
                      "rate": _en_rate, "currency": _currency(EN_VOCAB)}),
}


def speaks(language: str) -> bool:
    """Whether the composers read numbers in `language` (zh-*, en-*)."""
    return language.split("-")[0] in _COMPOSERS


def vocabulary(language: str) -> dict[str, str]:
    """The fragment words of `language`: fragment id -> text (empty if not spoken)."""
    entry = _COMPOSERS.get(language.split("-")[0])
    return dict(entry[0]) if entry else {}


def compose(kind: str, value: Any, language: str, style: Style | None = None) -> Spoken:
    """`value` read out as `kind` in `language`. Raises ComposeError for a value the kind
    cannot read, and for a kind or language there is no composer for."""
    entry = _COMPOSERS.get(language.split("-")[0])
    if entry is None:
        raise ComposeError(f"no composer reads numbers in {language} "
                           f"(there are: {', '.join(sorted(_COMPOSERS))})")
    composer = entry[1].get(kind)
    if composer is None:
        raise ComposeError(f"'{kind}' is not a kind of value to read out "
                           f"(kinds: {', '.join(KINDS)})")
    return composer(value, style or Style())


def write(kind: str, value: Any, language: str) -> str:
    """`value` as a text message writes it (an SMS says 10,005.05元, not words)."""
    chinese = language.startswith("zh")
    if kind == "amount":
        amount = f"{Decimal(_fen(value)) / 100:,.2f}"
        return f"{amount}元" if chinese else f"{amount} yuan"
    if kind == "number":
        return f"{_integer(value):,}"
    if kind == "digits":
        return _digit_string(value)
    if kind == "date":
        day = _date(value)
        return (f"{day.year}年{day.month}月{day.day}日" if chinese
                else f"{_EN_MONTHS[day.month - 1]} {day.day}, {day.year}")
    if kind == "time":
        hour, minute = _time(value)
        return f"{hour:02d}:{minute:02d}"
    if kind == "percent":
        return f"{_decimal(value, 'percent')}%"
    if kind == "rate":
        return str(_decimal(value, "rate"))
    return compose(kind, value, language).text  # currency names, and errors for the rest


def fragment_texts(spoken: Spoken, language: str) -> Iterable[str]:
    """The texts of a Spoken's fragments, in order."""
    vocab = vocabulary(language)
    return (vocab[part] for part in spoken.parts)
