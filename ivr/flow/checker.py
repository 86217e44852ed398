"""Whole-flow checks: targets, outcomes, reachability, wait-less loops, prompts.

The loader has already checked each node on its own; this module checks how the
nodes and flows fit together. Every problem is reported with the place to fix it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr.engine.verbs import REGISTRY
from ivr.flow.diagnostics import Diagnostics, did_you_mean
from ivr.flow.model import Flow, FlowSet, Node, frozen_map
from ivr.speech.catalog import Catalog

if TYPE_CHECKING:
    from ivr.flow.loader import LoadedFlow


def check_flow_set(
    main: LoadedFlow,
    loaded: Mapping[Path, LoadedFlow],
    display: Mapping[Path, str],
    catalog: Catalog | None,
    diags: Diagnostics,
) -> FlowSet | None:
    by_id: dict[str, LoadedFlow] = {}
    id_of_path: dict[Path, str] = {}
    for path, item in loaded.items():
        other = by_id.get(item.flow.id)
        if other is not None and other is not item:
            where = item.positions.get("flow", item.flow.pos)
            diags.error(where, f"flow id '{item.flow.id}' is also used by {other.flow.path}")
            continue
        by_id[item.flow.id] = item
        id_of_path[path] = item.flow.id

    flows: dict[str, Flow] = {}
    for item in by_id.values():
        flows[item.flow.id] = _link_subflows(item.flow, id_of_path, diags)
    flow_set = FlowSet(main.flow.id, frozen_map(flows))
    waits = _flows_that_always_wait(flow_set)
    # A sub-flow with broken nodes cannot say what it returns: do not guess for its callers.
    unsure = {item.flow.id for item in by_id.values() if item.broken_nodes}
    for item in by_id.values():
        flow = flows[item.flow.id]
        target_errors = _check_outcomes(flow, flow_set, item, unsure, diags)
        if not item.broken_nodes and not target_errors:
            _check_reachable(flow, diags)
        if not item.broken_nodes:
            _check_waitless_loops(flow, waits, diags)
    if not unsure:
        _check_waitless_recursion(flow_set, waits, diags)
    if catalog is not None:
        for item in by_id.values():
            _check_prompts(item, catalog, diags)
    return None if diags.has_errors else flow_set


def _link_subflows(flow: Flow, id_of_path: Mapping[Path, str], diags: Diagnostics) -> Flow:
    from ivr.flow.loader import is_file, resolve_subflow, resolved_path

    nodes = dict(flow.nodes)
    for node in flow.nodes.values():
        ref = REGISTRY[node.verb].subflow(node.params)
        if ref is None:
            continue
        path = resolve_subflow(flow.path, ref.path)
        flow_id = id_of_path.get(resolved_path(path))
        if flow_id is None:
            if not is_file(path):
                # Shortened and escaped: the path may be huge or hold a NUL byte.
                shown = str(path)[:200].replace("\0", "\\0")
                diags.error(ref.pos, f"sub-flow '{ref.path[:100]}' not found (looked for {shown})")
            continue
        params = dataclasses.replace(node.params, flow_id=flow_id)
        nodes[node.id] = dataclasses.replace(node, params=params)
    return dataclasses.replace(flow, nodes=frozen_map(nodes))


def _check_outcomes(
    flow: Flow, flows: FlowSet, item: LoadedFlow, unsure: set[str], diags: Diagnostics
) -> int:
    """Check every outcome and target; returns how many targets do not exist."""
    known = [*flow.nodes, *item.broken_nodes]
    known_set = set(known)
    missing_targets = 0
    if flow.start not in known_set:
        where = item.positions.get("start", flow.pos)
        diags.error(where, f"start node '{flow.start}' does not exist{did_you_mean(flow.start, known)}")
        missing_targets += 1
    for node in flow.nodes.values():
        verb = REGISTRY[node.verb]
        required = verb.required_outcomes(node.params, flows)
        options = dict(verb.option_targets(node.params))
        allowed = {*required, *options, *verb.optional_outcomes(node.params)}
        subflow_id = getattr(node.params, "flow_id", None) if verb.subflow(node.params) else None
        if subflow_id is not None and (subflow_id not in flows.flows or subflow_id in unsure):
            allowed |= set(node.transitions)  # the sub-flow's own problems are reported there
        suggested: set[str] = set()
        for outcome, target in node.transitions.items():
            if outcome not in allowed:
                where = target.key_pos or target.pos
                if subflow_id is not None and not allowed:
                    diags.error(where, f"sub-flow '{subflow_id}' has no 'return' node, so this "
                                f"call never gets outcome '{outcome}'")
                elif not allowed:
                    diags.error(where, f"{verb.name} ends the call; it has no outcome '{outcome}'")
                else:
                    names = ", ".join(sorted(allowed))
                    hint = did_you_mean(outcome, allowed)
                    if hint:
                        suggested.add(hint.split("'")[1])
                    diags.error(where, f"{verb.name} has no outcome '{outcome}'{hint}; "
                                f"its outcomes are: {names}")
                continue
            if target.node not in known_set:
                missing_targets += 1
                diags.error(target.pos, f"'{target.node}' is not a node of flow '{flow.id}'"
                            f"{did_you_mean(target.node, known)}")
        for outcome in required:
            if outcome not in node.transitions and outcome not in suggested:
                how = "'next: NODE'" if outcome == "next" else f"'{outcome}: NODE' under 'on:'"
                diags.error(node.pos, f"node '{node.id}' does not say where outcome '{outcome}' "
                            f"of {verb.name} leads; add {how}")
    return missing_targets


def _edges(node: Node) -> Iterable[str]:
    return (t.node for t in node.transitions.values())


def _check_reachable(flow: Flow, diags: Diagnostics) -> None:
    if flow.start not in flow.nodes:
        return
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        node = flow.nodes[todo.pop()]
        for nxt in _edges(node):
            if nxt in flow.nodes and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    for node in flow.nodes.values():
        if node.id not in seen:
            diags.error(node.pos, f"node '{node.id}' cannot be reached from start node '{flow.start}'")


def _node_waits(node: Node, waiting_flows: set[str]) -> bool:
    verb = REGISTRY[node.verb]
    if verb.waits or verb.ends_call:
        return True
    return verb.subflow(node.params) is not None and node.params.flow_id in waiting_flows


def _flows_that_always_wait(flows: FlowSet) -> set[str]:
    """Flows in which every way from start to a `return` passes a wait.

    A call node waits when its sub-flow always does, so the answer is found by
    repeating until nothing changes (sub-flows may nest)."""
    result: set[str] = set()
    while True:
        found = {flow.id for flow in flows.flows.values() if _always_waits(flow, result)}
        if found == result:
            return result
        result = found


def _always_waits(flow: Flow, waiting_flows: set[str]) -> bool:
    if flow.start not in flow.nodes:
        return False
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        node = flow.nodes[todo.pop()]
        if node.verb == "return":
            return False
        if _node_waits(node, waiting_flows):
            continue
        for nxt in _edges(node):
            if nxt in flow.nodes and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return True


def _check_waitless_loops(flow: Flow, waiting_flows: set[str], diags: Diagnostics) -> None:
    """Report each loop of nodes that can go round without ever waiting for the caller."""
    graph = {
        node.id: [n for n in _edges(node) if n in flow.nodes]
        for node in flow.nodes.values()
        if not _node_waits(node, waiting_flows)
    }
    order = {node_id: i for i, node_id in enumerate(flow.nodes)}
    for component in _strongly_connected(graph):
        ids = set(component)
        first = min(component, key=order.__getitem__)
        looping = len(component) > 1 or first in graph.get(first, [])
        if not looping:
            continue
        path = _cycle_from(first, graph, ids)
        diags.error(flow.nodes[first].pos,
                    f"nodes {' -> '.join(path)} can loop forever without waiting for the caller")


def _check_waitless_recursion(flows: FlowSet, waiting_flows: set[str], diags: Diagnostics) -> None:
    """Report sub-flow calls that can nest forever before the caller is waited for.

    Same idea as the loop check, over all flows at once: a call node leads into its
    sub-flow's start, so a sub-flow that calls itself (or one that calls it back)
    before any wait is a cycle."""
    graph: dict[tuple[str, str], list[tuple[str, str]]] = {}
    calls: set[tuple[str, str]] = set()
    for flow in flows.flows.values():
        for node in flow.nodes.values():
            if _node_waits(node, waiting_flows):
                continue
            edges = [(flow.id, n) for n in _edges(node) if n in flow.nodes]
            if REGISTRY[node.verb].subflow(node.params) is not None:
                sub = flows.flows.get(node.params.flow_id)
                if sub is not None and sub.start in sub.nodes:
                    edges.append((sub.id, sub.start))
                    calls.add((flow.id, node.id))
            graph[(flow.id, node.id)] = edges
    for component in _strongly_connected(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue  # no cycle through here
        looping_calls = sorted(c for c in calls if c in members)
        if not looping_calls:
            continue  # a loop inside one flow, reported by the loop check
        flow_id, node_id = looping_calls[0]
        node = flows.flow(flow_id).nodes[node_id]
        nested = " -> ".join(sorted({f for f, _ in members}))
        diags.error(node.pos, f"call of sub-flow '{node.params.flow_id}' can nest forever without "
                    f"waiting for the caller (flows {nested})")


def _cycle_from(start: str, graph: Mapping[str, list[str]], ids: set[str]) -> list[str]:
    path = [start]
    seen = {start}
    current = start
    while True:
        nxt = next(n for n in graph[current] if n in ids)
        path.append(nxt)
        if nxt in seen:
            return path[path.index(nxt):] if nxt != start else path
        seen.add(nxt)
        current = nxt


def _strongly_connected(graph: Mapping[Any, list[Any]]) -> list[list[Any]]:
    """Tarjan's algorithm, iterative so a long chain of nodes cannot overflow the stack."""
    index: dict[Any, int] = {}
    low: dict[Any, int] = {}
    on_stack: set[Any] = set()
    stack: list[Any] = []
    result: list[list[Any]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = [n for n in graph[node] if n in graph]
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            for nxt in succ:
                if nxt in on_stack:
                    low[node] = min(low[node], low[nxt])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                result.append(component)
    return result


def _check_prompts(item: LoadedFlow, catalog: Catalog, diags: Diagnostics) -> None:
    flow = item.flow
    missing_languages = [lang for lang in flow.languages if lang not in catalog.languages]
    where = item.positions.get("languages", item.positions.get("language", flow.pos))
    for lang in missing_languages:
        diags.error(where, f"the prompt catalog {catalog.root} has no {lang}.yaml "
                    f"for language '{lang}'")
    for ref in item.prompts:
        absent = [
            lang for lang in flow.languages
            if lang not in missing_languages and not catalog.has(ref.id, lang)
        ]
        if absent:
            hint = did_you_mean(ref.id, catalog.ids(absent[0]))
            diags.error(ref.pos, f"prompt '{ref.id}' is not in the catalog for "
                        f"{', '.join(absent)}{hint}")
