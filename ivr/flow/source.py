"""YAML read into plain values that remember where they came from.

ruamel.yaml's round-trip loader knows the line and column of every key and item;
this module turns its tree into small immutable nodes so the rest of the loader
never touches ruamel and every message can point at the exact place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarint import BinaryInt, HexCapsInt, HexInt, OctalInt, ScalarInt

from ivr.flow.diagnostics import Pos

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class YScalar:
    value: Scalar
    pos: Pos


@dataclass(frozen=True)
class YSeq:
    items: tuple[YValue, ...]
    pos: Pos


@dataclass(frozen=True)
class YEntry:
    key: str
    key_pos: Pos
    value: YValue


@dataclass(frozen=True)
class YMap:
    entries: tuple[YEntry, ...]
    pos: Pos

    def get(self, key: str) -> YEntry | None:
        for entry in self.entries:
            if entry.key == key:
                return entry
        return None

    def keys(self) -> list[str]:
        return [e.key for e in self.entries]


YValue = YScalar | YSeq | YMap


class YamlSyntaxError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


def describe(value: YValue) -> str:
    """How a flow author would name the kind of value they wrote."""
    if isinstance(value, YMap):
        return "a mapping"
    if isinstance(value, YSeq):
        return "a list"
    v = value.value
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, int):
        return "a whole number"
    if isinstance(v, float):
        return "a decimal number"
    if not v.strip():
        return "empty text"
    return "text"


def parse_yaml(text: str, file: str) -> YValue:
    """Parse YAML text; syntax problems raise YamlSyntaxError with a position."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        raise YamlSyntaxError(*_describe_yaml_error(exc, text, file)) from None
    except YAMLError as exc:
        raise YamlSyntaxError(Pos(file, 1, 1), f"YAML syntax: {exc}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        # ruamel raises plain errors for some malformed tags and anchors.
        raise YamlSyntaxError(Pos(file, 1, 1), f"YAML syntax: {exc}") from None
    return _convert(data, Pos(file, 1, 1), file, depth=0)


_OPENERS = (("quoted scalar", "a quote"), ("flow sequence", "a '['"), ("flow mapping", "a '{'"))
_DUPLICATE = re.compile(r'found duplicate key "(.*?)"')


def _describe_yaml_error(exc: MarkedYAMLError, text: str, file: str) -> tuple[Pos, str]:
    """Point at the place to fix, in words a flow author can act on."""
    problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
    mark = exc.problem_mark or exc.context_mark
    duplicate = _DUPLICATE.search(problem)
    if duplicate:
        problem = f"key '{duplicate.group(1)}' appears twice in the same mapping"
    elif exc.context_mark is not None and (
        "end of stream" in problem or problem.startswith("expected ',' or")
    ):
        # Something opened (a quote, a bracket) and never closed: show where it opened.
        mark = exc.context_mark
        context = str(exc.context or "")
        opened = next((what for words, what in _OPENERS if words in context), None)
        if opened:
            problem = f"{opened} opened here is never closed"
        else:
            mark = exc.problem_mark or mark
    line = mark.line + 1 if mark is not None else 1
    col = mark.column + 1 if mark is not None else 1
    last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
    line = max(1, min(line, last_line))
    return Pos(file, line, col), f"YAML syntax: {problem}"


def _entry_positions(data: CommentedMap, key: Any, fallback: Pos, file: str) -> tuple[Pos, Pos]:
    try:
        kline, kcol = data.lc.key(key)
        vline, vcol = data.lc.value(key)
    except (KeyError, TypeError):
        # Keys merged in with `<<: *anchor` have no position of their own here.
        return fallback, fallback
    return Pos(file, kline + 1, kcol + 1), Pos(file, vline + 1, vcol + 1)


def _convert(data: Any, pos: Pos, file: str, depth: int) -> YValue:
    if depth > 100:
        raise YamlSyntaxError(pos, "YAML syntax: nesting is too deep")
    if isinstance(data, CommentedMap):
        entries = []
        map_pos = Pos(file, data.lc.line + 1, data.lc.col + 1) if data.lc.line is not None else pos
        for key, value in data.items():
            key_pos, value_pos = _entry_positions(data, key, map_pos, file)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise YamlSyntaxError(key_pos, "YAML syntax: keys must be plain text")
            if value is None:
                # An empty value has no place of its own; the parser would give the next token's.
                value_pos = key_pos
            entries.append(
                YEntry(_key_text(key), key_pos, _convert(value, value_pos, file, depth + 1))
            )
        return YMap(tuple(entries), map_pos)
    if isinstance(data, CommentedSeq):
        items = []
        for i, value in enumerate(data):
            iline, icol = data.lc.item(i)
            items.append(_convert(value, Pos(file, iline + 1, icol + 1), file, depth + 1))
        seq_pos = Pos(file, data.lc.line + 1, data.lc.col + 1) if data.lc.line is not None else pos
        return YSeq(tuple(items), seq_pos)
    if data is None or isinstance(data, bool):
        return YScalar(data, pos)
    if isinstance(data, ScalarInt) and _int_text(data) != str(int(data)):
        # Written as 09, 0x1F or 1_000: keep what was written, not the number it makes.
        return YScalar(_int_text(data), pos)
    if isinstance(data, int):
        return YScalar(int(data), pos)
    if isinstance(data, float):
        return YScalar(float(data), pos)
    if isinstance(data, str):
        return YScalar(str(data), pos)
    # Dates, binary and other tagged values have no meaning in a flow.
    return YScalar(str(data), pos)


def _int_text(number: ScalarInt) -> str:
    width = getattr(number, "_width", None)
    if isinstance(number, HexCapsInt):
        return f"0x{int(number):X}"
    if isinstance(number, HexInt):
        return f"0x{int(number):x}"
    if isinstance(number, OctalInt):
        return f"0o{int(number):o}"
    if isinstance(number, BinaryInt):
        return f"0b{int(number):b}"
    if width:
        return f"{int(number):0{width}d}"
    if getattr(number, "_underscore", None):
        return f"{int(number):_}"
    return str(int(number))


def _key_text(key: str | int | float | bool) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, ScalarInt):
        return _int_text(key)
    return str(key)
