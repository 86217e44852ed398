"""Sandboxed expressions for `branch`, `set` and `transfer` data.

Expressions are Jinja2 expressions compiled in Jinja2's immutable sandbox: flow
authors get comparisons, arithmetic, `and`/`or`/`not`, `in`, literals and
filters such as `|length`, but no Python `eval`, no attribute that starts with an
underscore, no way to mutate values and no way to reach the file system. Sizes of
`*` and `**` results are bounded so one expression cannot exhaust memory.
Unknown variables read as nothing (`none`), so `customer.segment == 'vip'` is
simply false before the customer is known.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ivr.engine.fastexpr import (
    Compiled,
    Refused,
    Unsupported,
    bounded_mul,
    bounded_pow,
    compile_node,
)


class ExpressionError(Exception):
    """An expression failed to compile or to evaluate."""


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        bounded = bounded_pow if operator_name == "**" else bounded_mul
        try:
            return bounded(left, right)
        except Refused as exc:
            raise SecurityError(str(exc)) from None


_ENV = _BoundedSandbox(undefined=ChainableUndefined, autoescape=False)


class Expression:
    """One compiled expression; `evaluate` runs it against call variables.

    Most expressions run as Python closures (`ivr.engine.fastexpr`); the few that
    use more of the language run in the Jinja2 sandbox. Both read an unknown name
    as `none`.
    """

    __slots__ = ("_fast", "_names", "_run", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        if not source.strip():
            raise ExpressionError("expression is empty")
        self._run: Callable[..., Any] = _no_sandbox
        try:
            parser = Parser(_ENV, source, state="variable")
            tree = parser.parse_expression()
            if not parser.stream.eos:
                raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
        except TemplateSyntaxError as exc:
            raise ExpressionError(f"expression does not compile: {_plain_words(exc.message or '')}") from None
        except RecursionError:
            raise ExpressionError("expression does not compile: nested too deeply") from None
        self._fast: Compiled | None
        try:
            self._fast = compile_node(tree)
            self._names: frozenset[str] = frozenset()
        except (Unsupported, RecursionError):
            self._fast = None
            self._names = frozenset(n.name for n in tree.find_all(nodes.Name))
            try:
                self._run = _ENV.compile_expression(source, undefined_to_none=True)
            except TemplateSyntaxError as exc:
                raise ExpressionError(
                    f"expression does not compile: {_plain_words(exc.message or '')}") from None

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        if self._fast is not None:
            try:
                return self._fast(variables)
            except Refused as exc:
                raise ExpressionError(f"'{self.source}' is not allowed: {exc}") from None
            except Exception as exc:  # an author's expression may fail in many ways
                raise ExpressionError(f"'{self.source}' failed: {exc}") from None
        # Unknown names are `none` here too, so filters and tests see None, not Undefined.
        scope = {name: None for name in self._names if name not in variables}
        scope.update(variables)
        try:
            value = self._run(**scope)
        except SecurityError as exc:
            raise ExpressionError(f"'{self.source}' is not allowed: {exc}") from None
        except Exception as exc:  # an author's expression may fail in many ways
            raise ExpressionError(f"'{self.source}' failed: {exc}") from None
        if isinstance(value, ChainableUndefined):
            return None
        return value


def _no_sandbox(**_: Any) -> Any:
    raise AssertionError("unreachable: fast expressions never use the sandbox")


_UNEXPECTED_CHAR = re.compile(r"unexpected char (.+) at (\d+)")
_EXPECTED_TOKEN = re.compile(r"expected token '([^']+)', got '([^']+)'")


def _plain_words(message: str) -> str:
    """Jinja2's parser speaks of templates and tokens; flow authors write expressions."""
    if "end of template" in message:
        return "it ends before it is complete (is a value, bracket or quote missing?)"
    if "chunk after expression" in message:
        return "something follows the end of the expression (is an operator missing?)"
    char = _UNEXPECTED_CHAR.search(message)
    if char and char.group(1).strip("\"'") == "":
        return f"a quote is never closed (character {int(char.group(2)) + 1})"
    if char:
        return f"{char.group(1)} cannot be used here (character {int(char.group(2)) + 1})"
    token = _EXPECTED_TOKEN.search(message)
    if token:
        return f"did not expect '{token.group(2)}' here (is an operator or quote missing?)"
    return message


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    """An Expression for `source`; the same text compiles once (a flow repeats many)."""
    return Expression(source)
