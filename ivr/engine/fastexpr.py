"""Expressions compiled to Python closures: the common part of the language, fast.

Jinja2's own compiled expressions build a template context for every evaluation,
which costs more than the rest of an interpreter step. This module walks the same
parse tree (Jinja2's parser, so the syntax is identical) and turns the nodes a
flow author uses (names, attribute and item lookups, literals, comparisons,
arithmetic, `and`/`or`/`not`, `x if c else y`, `~`, a whitelist of filters and
tests) into nested closures. Anything else (function calls, unknown filters) is
`Unsupported`, and the caller falls back to the Jinja2 sandbox.

The closures are safe by construction: attributes are read from mappings only, no
name starting with `_` is ever looked up, nothing is called except the filters
listed here, and `*` and `**` are bounded as in the sandbox.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import nodes

Scope = Mapping[str, Any]
Compiled = Callable[[Scope], Any]

MAX_SEQUENCE = 10_000
MAX_EXPONENT = 1_000


class Unsupported(Exception):
    """The expression uses something only the Jinja2 sandbox evaluates."""


class Refused(Exception):
    """Evaluation refused for safety (a result too large)."""


def _to_float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _to_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return default


def _default(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    if value is None or (boolean and not value):
        return fallback
    return value


def _round(value: Any, precision: int = 0, method: str = "common") -> float:
    number = _to_float(value)
    scale = 10.0**precision
    if method == "ceil":
        return math.ceil(number * scale) / scale
    if method == "floor":
        return math.floor(number * scale) / scale
    return float(round(number, precision))


def _first(value: Any) -> Any:
    return next(iter(value), None) if value is not None else None


def _last(value: Any) -> Any:
    seq = list(value) if value is not None else []
    return seq[-1] if seq else None


FILTERS: dict[str, Callable[..., Any]] = {
    "float": _to_float,
    "int": _to_int,
    "string": lambda v: "" if v is None else str(v),
    "length": lambda v: 0 if v is None else len(v),
    "count": lambda v: 0 if v is None else len(v),
    "lower": lambda v: str(v).lower(),
    "upper": lambda v: str(v).upper(),
    "trim": lambda v: str(v).strip(),
    "title": lambda v: str(v).title(),
    "capitalize": lambda v: str(v).capitalize(),
    "abs": lambda v: abs(v),
    "round": _round,
    "default": _default,
    "d": _default,
    "first": _first,
    "last": _last,
    "join": lambda v, sep="": sep.join(str(x) for x in v),
    "replace": lambda v, old, new: str(v).replace(old, new),
    "list": lambda v: [] if v is None else list(v),
    "sum": lambda v: sum(v),
    "min": lambda v: min(v),
    "max": lambda v: max(v),
}

TESTS: dict[str, Callable[..., bool]] = {
    "none": lambda v: v is None,
    "defined": lambda v: v is not None,
    "undefined": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "mapping": lambda v: isinstance(v, Mapping),
    "even": lambda v: isinstance(v, int) and v % 2 == 0,
    "odd": lambda v: isinstance(v, int) and v % 2 == 1,
    "true": lambda v: v is True,
    "false": lambda v: v is False,
    "in": lambda v, seq: v in seq,
}


def bounded_mul(left: Any, right: Any) -> Any:
    """`*`, refusing a string or list longer than MAX_SEQUENCE."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int) \
                and len(seq) * times > MAX_SEQUENCE:
            raise Refused("result too long")
    return left * right


def bounded_pow(left: Any, right: Any) -> Any:
    """`**`, refusing an exponent above MAX_EXPONENT."""
    if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
        raise Refused("exponent too large")
    return left**right


BINARY: dict[type, Callable[[Any, Any], Any]] = {
    nodes.Add: operator.add, nodes.Sub: operator.sub, nodes.Mul: bounded_mul,
    nodes.Div: operator.truediv, nodes.FloorDiv: operator.floordiv, nodes.Mod: operator.mod,
    nodes.Pow: bounded_pow,
}
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "gt": operator.gt,
    "lteq": operator.le, "gteq": operator.ge,
    "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}


def _lookup(container: Any, key: Any) -> Any:
    """`a.b` and `a[b]`: mappings and sequences only; a miss is None, like an unknown name."""
    if isinstance(key, str) and key.startswith("_"):
        return None
    if isinstance(container, Mapping):
        return container.get(key)
    if isinstance(container, list | tuple | str) and isinstance(key, int) \
            and not isinstance(key, bool):
        try:
            return container[key]
        except IndexError:
            return None
    return None


def compile_node(node: nodes.Node) -> Compiled:
    kind = type(node)
    if kind is nodes.Const:
        value = node.value  # type: ignore[attr-defined]
        return lambda scope: value
    if kind is nodes.Name:
        name = node.name  # type: ignore[attr-defined]
        if name.startswith("_"):
            raise Unsupported(name)
        return lambda scope: scope.get(name)
    if kind is nodes.Getattr:
        target = compile_node(node.node)  # type: ignore[attr-defined]
        attr = node.attr  # type: ignore[attr-defined]
        return lambda scope: _lookup(target(scope), attr)
    if kind is nodes.Getitem:
        target = compile_node(node.node)  # type: ignore[attr-defined]
        arg = node.arg  # type: ignore[attr-defined]
        if isinstance(arg, nodes.Slice):
            return _slice(target, arg)
        index = compile_node(arg)
        return lambda scope: _lookup(target(scope), index(scope))
    if kind in BINARY:
        op = BINARY[kind]
        left, right = compile_node(node.left), compile_node(node.right)  # type: ignore[attr-defined]
        return lambda scope: op(left(scope), right(scope))
    if kind is nodes.Concat:
        parts = [compile_node(n) for n in node.nodes]  # type: ignore[attr-defined]
        return lambda scope: "".join("" if (v := p(scope)) is None else str(v) for p in parts)
    if kind is nodes.And:
        left, right = compile_node(node.left), compile_node(node.right)  # type: ignore[attr-defined]
        return lambda scope: left(scope) and right(scope)
    if kind is nodes.Or:
        left, right = compile_node(node.left), compile_node(node.right)  # type: ignore[attr-defined]
        return lambda scope: left(scope) or right(scope)
    if kind is nodes.Not:
        inner = compile_node(node.node)  # type: ignore[attr-defined]
        return lambda scope: not inner(scope)
    if kind is nodes.Neg:
        inner = compile_node(node.node)  # type: ignore[attr-defined]
        return lambda scope: -inner(scope)
    if kind is nodes.Pos:
        inner = compile_node(node.node)  # type: ignore[attr-defined]
        return lambda scope: +inner(scope)
    if kind is nodes.Compare:
        return _compare(node)
    if kind is nodes.CondExpr:
        test = compile_node(node.test)  # type: ignore[attr-defined]
        then = compile_node(node.expr1)  # type: ignore[attr-defined]
        other = compile_node(node.expr2) if node.expr2 is not None else (lambda scope: None)  # type: ignore[attr-defined]
        return lambda scope: then(scope) if test(scope) else other(scope)
    if kind in (nodes.List, nodes.Tuple):
        items = [compile_node(n) for n in node.items]  # type: ignore[attr-defined]
        build = list if kind is nodes.List else tuple
        return lambda scope: build(i(scope) for i in items)
    if kind is nodes.Dict:
        pairs = [(compile_node(p.key), compile_node(p.value)) for p in node.items]  # type: ignore[attr-defined]
        return lambda scope: {k(scope): v(scope) for k, v in pairs}
    if kind is nodes.Filter:
        return _call(node, FILTERS, negate=False)
    if kind is nodes.Test:
        return _call(node, TESTS, negate=False)
    raise Unsupported(kind.__name__)


def _slice(target: Compiled, arg: nodes.Slice) -> Compiled:
    start = compile_node(arg.start) if arg.start is not None else (lambda scope: None)
    stop = compile_node(arg.stop) if arg.stop is not None else (lambda scope: None)
    step = compile_node(arg.step) if arg.step is not None else (lambda scope: None)

    def run(scope: Scope) -> Any:
        value = target(scope)
        if not isinstance(value, list | tuple | str):
            return None
        return value[slice(start(scope), stop(scope), step(scope))]

    return run


def _compare(node: nodes.Node) -> Compiled:
    first = compile_node(node.expr)  # type: ignore[attr-defined]
    ops = [(COMPARE[o.op], compile_node(o.expr)) for o in node.ops]  # type: ignore[attr-defined]

    def run(scope: Scope) -> bool:
        left = first(scope)
        for op, right_of in ops:
            right = right_of(scope)
            if not op(left, right):
                return False
            left = right
        return True

    return run


def _call(node: nodes.Node, table: Mapping[str, Callable[..., Any]], negate: bool) -> Compiled:
    name = node.name  # type: ignore[attr-defined]
    function = table.get(name)
    if function is None or node.kwargs or node.dyn_args or node.dyn_kwargs:  # type: ignore[attr-defined]
        raise Unsupported(f"{name}")
    value = compile_node(node.node)  # type: ignore[attr-defined]
    args = [compile_node(a) for a in node.args]  # type: ignore[attr-defined]
    if not args:
        return lambda scope: function(value(scope))
    return lambda scope: function(value(scope), *(a(scope) for a in args))
