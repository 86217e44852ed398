"""YAML read into plain values that remember where they came from.

The document is composed with libyaml (PyYAML's C parser; the pure-Python one
where the C one is missing): every node keeps its line and column, and a
2,000-node flow parses in tens of milliseconds where a round-trip Python parser
takes seconds. Scalars are then typed by the YAML 1.2 core schema, not YAML 1.1,
so `on:` stays the word "on" and `01` stays "01"; merge keys (`<<:`) are applied;
duplicate keys and runaway alias expansion are reported.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import yaml

from ivr.flow.diagnostics import Pos

Scalar = str | int | float | bool | None


# Named tuples rather than dataclasses: a large flow has tens of thousands of values.
class YScalar(NamedTuple):
    value: Scalar
    pos: Pos


class YSeq(NamedTuple):
    items: tuple[YValue, ...]
    pos: Pos


class YEntry(NamedTuple):
    key: str
    key_pos: Pos
    value: YValue


class YMap(NamedTuple):
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


_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAGS = {yaml.ScalarNode: "tag:yaml.org,2002:str", yaml.SequenceNode: "tag:yaml.org,2002:seq",
         yaml.MappingNode: "tag:yaml.org,2002:map"}


class _Loader(_BASE_LOADER):  # type: ignore[misc]
    """Composes nodes without PyYAML's YAML 1.1 tag guessing: scalars are typed below."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        return _TAGS[kind]


_LOADER: Any = _Loader
MAX_VALUES = 200_000
MERGE_TAG = "tag:yaml.org,2002:merge"


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a flow is read and checked.

    Reading a big flow allocates hundreds of thousands of objects and no cycles;
    the collector would otherwise scan the whole heap again and again (it doubled
    the time to load a 2,000-node flow)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_yaml(text: str, file: str) -> YValue:
    """Parse YAML text; syntax problems raise YamlSyntaxError with a position."""
    with collector_paused():
        return _parse(text, file)


def _parse(text: str, file: str) -> YValue:
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        raise YamlSyntaxError(*_describe_yaml_error(exc, text, file)) from None
    except Exception as exc:  # the parser raises plain errors for a few malformed inputs
        raise YamlSyntaxError(Pos(file, 1, 1), f"YAML syntax: {exc or type(exc).__name__}") from None
    if node is None:
        return YScalar(None, Pos(file, 1, 1))
    return _Converter(file).convert(node, depth=0)


_OPENERS = (("quoted scalar", "a quote"), ("flow sequence", "a '['"), ("flow mapping", "a '{'"))


def _describe_yaml_error(exc: yaml.MarkedYAMLError, text: str, file: str) -> tuple[Pos, str]:
    """Point at the place to fix, in words a flow author can act on."""
    problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark is not None and (
        "end of stream" in problem or problem.startswith("expected ',' or")
    ):
        # Something opened (a quote, a bracket) and never closed: show where it opened.
        context = str(exc.context or "")
        opened = next((what for words, what in _OPENERS if words in context), None)
        if opened:
            mark = exc.context_mark
            problem = f"{opened} opened here is never closed"
    if "cannot start any token" in problem and mark is not None:
        found = text[mark.index:mark.index + 1] if mark.index < len(text) else ""
        problem = ("a tab cannot indent YAML; use spaces" if found == "\t"
                   else f"found {found!r}, which cannot start any token")
    line = mark.line + 1 if mark is not None else 1
    col = mark.column + 1 if mark is not None else 1
    last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
    line = max(1, min(line, last_line))
    return Pos(file, line, col), f"YAML syntax: {problem}"


# YAML 1.2 core schema, for plain (unquoted) scalars.
_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_SPECIAL_FLOATS = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"),
                   ".nan": float("nan")}


def _plain_value(text: str) -> Scalar:
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.fullmatch(text):
        digits = text.lstrip("+-")
        if (len(digits) > 1 and digits.startswith("0")) or len(digits) > 40:
            return text  # 01, 007: telephone keys, not numbers; and nothing needs 40 digits
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.lower() in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text.lower()]
    return text


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        # Anchors and aliases can make a small file expand without end ("billion laughs").
        self.budget = MAX_VALUES

    def pos(self, node: yaml.Node) -> Pos:
        mark = node.start_mark
        return Pos(self.file, mark.line + 1, mark.column + 1)  # libyaml counts from 0

    def convert(self, node: yaml.Node, depth: int) -> YValue:
        if depth > 100:
            raise YamlSyntaxError(self.pos(node), "YAML syntax: nesting is too deep")
        self.budget -= 1
        if self.budget < 0:
            raise YamlSyntaxError(self.pos(node), f"YAML syntax: the file expands to more than "
                                  f"{MAX_VALUES} values (are aliases nested?)")
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            return YSeq(tuple(self.convert(item, depth + 1) for item in node.value), self.pos(node))
        assert isinstance(node, yaml.ScalarNode)
        if not node.style:  # plain: None from the Python parser, "" from libyaml
            return YScalar(_plain_value(node.value), self.pos(node))
        return YScalar(node.value, self.pos(node))

    def mapping(self, node: yaml.MappingNode, depth: int) -> YMap:
        entries: list[YEntry] = []
        first_at: dict[str, Pos] = {}
        merged: list[YEntry] = []
        for key_node, value_node in node.value:
            key_pos = self.pos(key_node)
            if key_node.tag == MERGE_TAG or (
                isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<"
                and not key_node.style
            ):
                merged.extend(self.merge(value_node, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError(key_pos, "YAML syntax: keys must be plain text")
            key = key_node.value
            if key in first_at:
                raise YamlSyntaxError(key_pos, f"YAML syntax: key '{key}' appears twice in the same "
                                      f"mapping (first on line {first_at[key].line})")
            first_at[key] = key_pos
            empty = isinstance(value_node, yaml.ScalarNode) and not value_node.style \
                and value_node.value == ""
            # An empty value has no place of its own; the parser gives the next token's.
            value = YScalar(None, key_pos) if empty else self.convert(value_node, depth + 1)
            entries.append(YEntry(key, key_pos, value))
        for entry in merged:
            if entry.key not in first_at:
                first_at[entry.key] = entry.key_pos
                entries.append(entry)
        return YMap(tuple(entries), self.pos(node))

    def merge(self, node: yaml.Node, depth: int) -> list[YEntry]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: list[YEntry] = []
        for source in sources:
            merged = self.convert(source, depth + 1)
            if not isinstance(merged, YMap):
                raise YamlSyntaxError(self.pos(source), "YAML syntax: '<<' merges mappings only")
            out.extend(merged.entries)
        return out
