"""Parameter kinds for verbs: each reads a located YAML value or says what is wrong.

A verb declares its parameters once, as a frozen keyword-only dataclass whose
fields carry a `Spec` (made with `param()`); the loader reads the YAML against it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ivr.engine.expr import ExpressionError, compile_expression
from ivr.flow.diagnostics import Pos, did_you_mean
from ivr.flow.model import ExprRef, PromptRef, Target
from ivr.flow.source import YMap, YScalar, YSeq, YValue, describe

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DTMF = "0123456789*#"


class Invalid(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


@dataclass
class ParseContext:
    """What parameter kinds record while they read: every prompt, and where each parameter is."""

    prompts: list[PromptRef] = field(default_factory=list)
    #: where each parameter of the node being read was written
    positions: dict[str, Pos] = field(default_factory=dict)


Kind = Callable[[YValue, ParseContext], Any]


@dataclass(frozen=True)
class Spec:
    kind: Kind
    type_name: str
    required: bool
    doc: str
    #: the name written in YAML when it cannot be the field's (`with` is a Python keyword)
    key: str | None = None


def param(kind: Kind, type_name: str, *, default: Any = dataclasses.MISSING, doc: str = "",
          key: str | None = None) -> Any:
    """Declare a verb parameter; without a default it is required."""
    spec = Spec(kind, type_name, default is dataclasses.MISSING, doc, key)
    if default is dataclasses.MISSING:
        return field(metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def specs(params_type: type) -> dict[str, tuple[str, Spec]]:
    """YAML key -> (field name, spec) for each parameter of a verb."""
    out: dict[str, tuple[str, Spec]] = {}
    for f in dataclasses.fields(params_type):
        if "spec" in f.metadata:
            spec: Spec = f.metadata["spec"]
            out[spec.key or f.name] = (f.name, spec)
    return out


def _scalar(value: YValue, expected: str) -> YScalar:
    if not isinstance(value, YScalar):
        raise Invalid(value.pos, f"expected {expected}, got {describe(value)}")
    return value


def text(value: YValue, ctx: ParseContext) -> str:
    v = _scalar(value, "text")
    if not isinstance(v.value, str) or not v.value.strip():
        raise Invalid(v.pos, f"expected text, got {describe(v)}")
    return v.value


def identifier(value: YValue, ctx: ParseContext) -> str:
    name = text(value, ctx)
    if not IDENTIFIER.match(name):
        raise Invalid(value.pos, f"'{name}' is not a valid name (letters, digits and _)")
    return name


def boolean(value: YValue, ctx: ParseContext) -> bool:
    v = _scalar(value, "true or false")
    if not isinstance(v.value, bool):
        raise Invalid(v.pos, f"expected true or false, got {describe(v)}")
    return v.value


def integer(lo: int, hi: int) -> Kind:
    def read(value: YValue, ctx: ParseContext) -> int:
        v = _scalar(value, "a whole number")
        if isinstance(v.value, bool) or not isinstance(v.value, int):
            raise Invalid(v.pos, f"expected a whole number, got {describe(v)}")
        if not lo <= v.value <= hi:
            raise Invalid(v.pos, f"expected a number from {lo} to {hi}, got {v.value}")
        return v.value

    return read


def seconds(value: YValue, ctx: ParseContext) -> float:
    v = _scalar(value, "a number of seconds")
    if isinstance(v.value, bool) or not isinstance(v.value, int | float):
        raise Invalid(v.pos, f"expected a number of seconds, got {describe(v)}")
    if not 0 < v.value <= 120:
        raise Invalid(v.pos, f"expected more than 0 and at most 120 seconds, got {v.value}")
    return float(v.value)


def choice(*options: str) -> Kind:
    def read(value: YValue, ctx: ParseContext) -> str:
        word = text(value, ctx)
        if word not in options:
            listed = ", ".join(options)
            hint = did_you_mean(word, options)
            raise Invalid(value.pos, f"'{word}' is not one of: {listed}{hint}")
        return word

    return read


def keys(value: YValue, ctx: ParseContext) -> str:
    """Telephone keys such as '#' or '*#'; an empty string means none."""
    v = _scalar(value, "telephone keys")
    raw = v.value
    if raw is None:
        return ""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise Invalid(v.pos, f"expected telephone keys, got {describe(v)}")
    word = str(raw)
    bad = [c for c in word if c not in DTMF]
    if bad:
        raise Invalid(v.pos, f"'{word}' is not made of telephone keys 0-9, * and #")
    return word


def _prompt_ref(value: YValue, ctx: ParseContext) -> PromptRef:
    name = text(value, ctx)
    if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
        raise Invalid(value.pos, f"'{name}' is not a valid prompt id")
    ref = PromptRef(name, value.pos)
    ctx.prompts.append(ref)
    return ref


def prompt(value: YValue, ctx: ParseContext) -> PromptRef:
    return _prompt_ref(value, ctx)


def prompts(value: YValue, ctx: ParseContext) -> tuple[PromptRef, ...]:
    """One prompt id, or a list of them played one after the other."""
    if isinstance(value, YSeq):
        if not value.items:
            raise Invalid(value.pos, "expected at least one prompt id")
        return tuple(_prompt_ref(item, ctx) for item in value.items)
    return (_prompt_ref(value, ctx),)


def expression(value: YValue, ctx: ParseContext) -> ExprRef:
    """Text is an expression; a bare number, true/false or nothing is that literal."""
    v = _scalar(value, "an expression")
    raw = v.value
    if raw is None:
        source = "none"
    elif isinstance(raw, bool):
        source = "true" if raw else "false"
    elif isinstance(raw, int | float):
        source = repr(raw)
    else:
        source = raw
    try:
        compiled = compile_expression(source)
    except ExpressionError as exc:
        raise Invalid(v.pos, str(exc)) from None
    return ExprRef(source, v.pos, compiled)


def expression_map(value: YValue, ctx: ParseContext) -> tuple[tuple[str, ExprRef], ...]:
    """A mapping of names to expressions, kept in the order written."""
    if not isinstance(value, YMap):
        raise Invalid(value.pos, f"expected a mapping of names to expressions, got {describe(value)}")
    out = []
    for entry in value.entries:
        if not IDENTIFIER.match(entry.key):
            raise Invalid(entry.key_pos, f"'{entry.key}' is not a valid name (letters, digits and _)")
        out.append((entry.key, expression(entry.value, ctx)))
    return tuple(out)


def target(value: YValue, ctx: ParseContext) -> Target:
    name = text(value, ctx)
    return Target(name, value.pos)


def key_targets(value: YValue, ctx: ParseContext) -> tuple[tuple[str, Target], ...]:
    """Menu options: telephone keys to the node each leads to."""
    if not isinstance(value, YMap):
        raise Invalid(value.pos, f"expected a mapping of keys to nodes, got {describe(value)}")
    if not value.entries:
        raise Invalid(value.pos, "expected at least one option")
    out = []
    for entry in value.entries:
        if not entry.key or any(c not in DTMF for c in entry.key):
            raise Invalid(entry.key_pos, f"option '{entry.key}' is not made of keys 0-9, * and #")
        found = target(entry.value, ctx)
        out.append((entry.key, Target(found.node, found.pos, entry.key_pos)))
    return tuple(out)


@dataclass(frozen=True)
class Case:
    when: ExprRef
    goto: Target


def cases(value: YValue, ctx: ParseContext) -> tuple[Case, ...]:
    """A list of `- if: EXPRESSION` / `goto: NODE` pairs, tried in order."""
    if not isinstance(value, YSeq):
        raise Invalid(value.pos, f"expected a list of cases, got {describe(value)}")
    if not value.items:
        raise Invalid(value.pos, "expected at least one case")
    out = []
    for item in value.items:
        if not isinstance(item, YMap):
            raise Invalid(item.pos, f"expected a case with 'if' and 'goto', got {describe(item)}")
        for entry in item.entries:
            if entry.key not in ("if", "goto"):
                raise Invalid(entry.key_pos, f"unknown key '{entry.key}' in a case; use 'if' and 'goto'")
        cond, goto = item.get("if"), item.get("goto")
        if cond is None or goto is None:
            missing = "if" if cond is None else "goto"
            raise Invalid(item.pos, f"case is missing '{missing}'")
        out.append(Case(expression(cond.value, ctx), target(goto.value, ctx)))
    return tuple(out)


@dataclass(frozen=True)
class FileRef:
    path: str
    pos: Pos


def flow_path(value: YValue, ctx: ParseContext) -> FileRef:
    path = text(value, ctx)
    if path.startswith("/") or "\\" in path:
        raise Invalid(value.pos, f"'{path}' must be a path relative to this flow file")
    return FileRef(path, value.pos)
