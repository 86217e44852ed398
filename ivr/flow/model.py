"""Typed, immutable flow objects, each part remembering where it was written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ivr.flow.diagnostics import Pos

if TYPE_CHECKING:
    from ivr.engine.expr import Expression


def frozen_map(items: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True)
class Target:
    """The node an outcome leads to."""

    node: str
    pos: Pos
    #: where the outcome itself is named (`next:` or a key under `on:`)
    key_pos: Pos | None = None


@dataclass(frozen=True)
class PromptRef:
    """A prompt id from the catalog, as written in a flow."""

    id: str
    pos: Pos


@dataclass(frozen=True)
class ExprRef:
    """A sandboxed expression as written in a flow, compiled once at load."""

    source: str
    pos: Pos
    compiled: Expression = field(compare=False, repr=False)

    def __call__(self, variables: Mapping[str, Any]) -> Any:
        return self.compiled.evaluate(variables)


@dataclass(frozen=True)
class Node:
    """One step of a flow: a verb, its checked parameters and its outcomes."""

    id: str
    verb: str
    params: Any
    transitions: Mapping[str, Target]
    pos: Pos


@dataclass(frozen=True)
class Flow:
    id: str
    version: int
    language: str
    languages: tuple[str, ...]
    start: str
    nodes: Mapping[str, Node]
    path: str
    pos: Pos
    description: str = ""
    #: where a call goes when the flow fails at run time
    fallback_queue: str = "agents"

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]


@dataclass(frozen=True)
class FlowSet:
    """A main flow and every sub-flow it calls, keyed by flow id."""

    main: str
    flows: Mapping[str, Flow]

    @property
    def entry(self) -> Flow:
        return self.flows[self.main]

    def flow(self, flow_id: str) -> Flow:
        return self.flows[flow_id]
