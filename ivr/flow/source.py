"""YAML read into plain values that remember where they came from.

ruamel.yaml's round-trip loader knows the line and column of every key and item;
this module turns its tree into small immutable nodes so the rest of the loader
never touches ruamel and every message can point at the exact place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

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
        return "a number"
    if isinstance(v, float):
        return "a number"
    return "text"


def parse_yaml(text: str, file: str) -> YValue:
    """Parse YAML text; syntax problems raise YamlSyntaxError with a position."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        col = mark.column + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        # ruamel's duplicate-key message is several lines; keep the first thought.
        problem = " ".join(str(problem).split())
        raise YamlSyntaxError(Pos(file, line, col), f"YAML syntax: {problem}") from None
    except YAMLError as exc:
        raise YamlSyntaxError(Pos(file, 1, 1), f"YAML syntax: {exc}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        # ruamel raises plain errors for some malformed tags and anchors.
        raise YamlSyntaxError(Pos(file, 1, 1), f"YAML syntax: {exc}") from None
    return _convert(data, Pos(file, 1, 1), file, depth=0)


def _convert(data: Any, pos: Pos, file: str, depth: int) -> YValue:
    if depth > 100:
        raise YamlSyntaxError(pos, "YAML syntax: nesting is too deep")
    if isinstance(data, CommentedMap):
        entries = []
        for key, value in data.items():
            kline, kcol = data.lc.key(key)
            vline, vcol = data.lc.value(key)
            key_pos = Pos(file, kline + 1, kcol + 1)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise YamlSyntaxError(key_pos, "YAML syntax: keys must be plain text")
            value_pos = Pos(file, vline + 1, vcol + 1)
            entries.append(
                YEntry(_key_text(key), key_pos, _convert(value, value_pos, file, depth + 1))
            )
        map_pos = Pos(file, data.lc.line + 1, data.lc.col + 1) if data.lc.line is not None else pos
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
    if isinstance(data, int):
        return YScalar(int(data), pos)
    if isinstance(data, float):
        return YScalar(float(data), pos)
    if isinstance(data, str):
        return YScalar(str(data), pos)
    # Dates, binary and other tagged values have no meaning in a flow.
    return YScalar(str(data), pos)


def _key_text(key: str | int | float | bool) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)
