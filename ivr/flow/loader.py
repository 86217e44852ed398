"""Read flow files into checked, immutable flows.

`load_flows(path)` reads a main flow and every sub-flow it calls, checks them all
(see `ivr.flow.checker`) and returns a FlowSet, or raises FlowError carrying every
problem found, each with its file, line and column. A flow that fails the check
never runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.engine.verbs import REGISTRY, Verb
from ivr.flow import params as p
from ivr.flow.diagnostics import Diagnostic, Diagnostics, FlowError, Pos, did_you_mean
from ivr.flow.model import Flow, FlowSet, Node, PromptRef, Target, frozen_map
from ivr.flow.source import (
    YamlSyntaxError,
    YMap,
    YScalar,
    YValue,
    collector_paused,
    describe,
    parse_yaml,
)
from ivr.speech.catalog import LANGUAGE, Catalog

TOP_KEYS = ("flow", "version", "language", "languages", "start", "nodes",
            "description", "fallback_queue")
REQUIRED_TOP = ("flow", "version", "language", "start", "nodes")
NODE_KEYS = ("next", "on", "description")
MAX_FILE_BYTES = 2_000_000


@dataclass
class LoadedFlow:
    """A flow as read from one file, with what the checker needs beyond the model."""

    flow: Flow
    prompts: list[PromptRef] = field(default_factory=list)
    #: node id -> position of the node's key, for nodes whose definition had errors
    broken_nodes: dict[str, Pos] = field(default_factory=dict)
    #: where each top-level value (flow, start, languages, ...) was written
    positions: dict[str, Pos] = field(default_factory=dict)


def read_flow_file(path: Path, diags: Diagnostics) -> LoadedFlow | None:
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        diags.error(Pos(file), f"cannot read flow file: {exc.strerror or exc}")
        return None
    if len(raw) > MAX_FILE_BYTES:
        diags.error(Pos(file), f"flow file is larger than {MAX_FILE_BYTES} bytes")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        diags.error(Pos(file), f"flow file is not UTF-8 (byte {exc.start})")
        return None
    return read_flow_text(text, file, diags)


def read_flow_text(text: str, file: str, diags: Diagnostics) -> LoadedFlow | None:
    try:
        tree = parse_yaml(text, file)
    except YamlSyntaxError as exc:
        diags.error(exc.pos, exc.message)
        return None
    if not isinstance(tree, YMap):
        diags.error(tree.pos, f"a flow file holds a mapping with {', '.join(REQUIRED_TOP)}; "
                    f"got {describe(tree)}")
        return None
    return _read_flow(tree, file, diags)


def _read_flow(tree: YMap, file: str, diags: Diagnostics) -> LoadedFlow | None:
    ctx = p.ParseContext()
    values: dict[str, Any] = {}
    ok = True
    for entry in tree.entries:
        if entry.key not in TOP_KEYS:
            diags.error(entry.key_pos, f"unknown key '{entry.key}'{did_you_mean(entry.key, TOP_KEYS)}")
            ok = False
    for key in REQUIRED_TOP:
        if tree.get(key) is None:
            diags.error(tree.pos, f"flow is missing '{key}'")
            ok = False
    kinds: dict[str, p.Kind] = {
        "flow": p.identifier, "version": p.integer(1, 10**6), "language": _language,
        "languages": _languages, "start": p.identifier, "description": p.text,
        "fallback_queue": p.identifier,
    }
    for key, kind in kinds.items():
        top = tree.get(key)
        values[key] = None
        if top is None:
            continue
        try:
            values[key] = kind(top.value, ctx)
        except p.Invalid as exc:
            diags.error(exc.pos, f"'{key}': {exc.message}")
            ok = False
    language = values["language"]
    languages = values["languages"] or ((language,) if language else ())
    lang_entry = tree.get("languages")
    if language and lang_entry is not None and language not in languages:
        diags.error(lang_entry.value.pos, f"languages must include the default language '{language}'")
        ok = False

    nodes: dict[str, Node] = {}
    broken: dict[str, Pos] = {}
    nodes_entry = tree.get("nodes")
    if nodes_entry is not None:
        if not isinstance(nodes_entry.value, YMap):
            diags.error(nodes_entry.value.pos, f"'nodes' must map node names to nodes; "
                        f"got {describe(nodes_entry.value)}")
            ok = False
        elif not nodes_entry.value.entries:
            diags.error(nodes_entry.value.pos, "'nodes' is empty; a flow needs at least its start node")
            ok = False
        else:
            for entry in nodes_entry.value.entries:
                node = _read_node(entry.key, entry.key_pos, entry.value, ctx, diags)
                if node is None:
                    broken[entry.key] = entry.key_pos
                else:
                    nodes[entry.key] = node
    if not ok or not values["flow"]:
        return None
    positions = {e.key: e.value.pos for e in tree.entries}
    flow = Flow(
        id=values["flow"],
        version=values["version"],
        language=language,
        languages=tuple(languages),
        start=values["start"],
        nodes=frozen_map(nodes),
        path=file,
        pos=tree.pos,
        description=values["description"] or "",
        fallback_queue=values["fallback_queue"] or "agents",
    )
    return LoadedFlow(flow, ctx.prompts, broken, positions)


def _language(value: YValue, ctx: p.ParseContext) -> str:
    code = p.text(value, ctx)
    if not LANGUAGE.fullmatch(code):
        raise p.Invalid(value.pos, f"'{code}' is not a language tag such as zh-CN or en-US")
    return code


def _languages(value: YValue, ctx: p.ParseContext) -> tuple[str, ...]:
    from ivr.flow.source import YSeq

    if not isinstance(value, YSeq) or not value.items:
        raise p.Invalid(value.pos, f"expected a list of language tags, got {describe(value)}")
    return tuple(_language(item, ctx) for item in value.items)


_NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _read_node(
    node_id: str, pos: Pos, value: YValue, ctx: p.ParseContext, diags: Diagnostics
) -> Node | None:
    if not _NODE_ID.match(node_id):
        diags.error(pos, f"'{node_id}' is not a valid node name (letters, digits and _)")
        return None
    if not isinstance(value, YMap):
        diags.error(value.pos, f"node '{node_id}' must be a mapping with a verb; got {describe(value)}")
        return None
    verb_entries = [e for e in value.entries if e.key in REGISTRY]
    ok = True
    for entry in value.entries:
        if entry.key not in REGISTRY and entry.key not in NODE_KEYS:
            hint = did_you_mean(entry.key, [*REGISTRY, *NODE_KEYS])
            diags.error(entry.key_pos, f"unknown verb or key '{entry.key}'{hint}")
            ok = False
    if not verb_entries:
        if ok:
            verbs = ", ".join(sorted(REGISTRY))
            diags.error(pos, f"node '{node_id}' has no verb; use one of: {verbs}")
        return None
    if len(verb_entries) > 1:
        diags.error(verb_entries[1].key_pos,
                    f"node '{node_id}' has two verbs ('{verb_entries[0].key}' and "
                    f"'{verb_entries[1].key}'); split it into two nodes")
        return None
    verb_entry = verb_entries[0]
    verb = REGISTRY[verb_entry.key]
    params = _read_params(verb, verb_entry.key_pos, verb_entry.value, ctx, diags)
    transitions = _read_transitions(node_id, value, verb, params, ctx, diags)
    if params is None or transitions is None or not ok:
        return None
    for where, message in verb.problems(params, ctx.positions):
        diags.error(where, message)
    return Node(node_id, verb.name, params, frozen_map(transitions), pos)


def _read_params(
    verb: Verb[Any], verb_pos: Pos, value: YValue, ctx: p.ParseContext, diags: Diagnostics
) -> Any:
    specs = p.specs(verb.Params)
    if isinstance(value, YScalar) and value.value is None and not any(
        s.required for _, s in specs.values()
    ):
        given: dict[str, YValue] = {}
    elif isinstance(value, YMap) and not (
        # `set: {a: 1}` names variables, not parameters; `set: {values: {...}}` is explicit.
        verb.shorthand and len(specs) == 1 and value.keys() != [verb.shorthand]
    ):
        given = {}
        unknown = False
        for entry in value.entries:
            if entry.key not in specs:
                hint = did_you_mean(entry.key, specs)
                diags.error(entry.key_pos, f"{verb.name} has no parameter '{entry.key}'{hint}")
                unknown = True
            given[entry.key] = entry.value
        if unknown:
            return None
    elif verb.shorthand:
        given = {verb.shorthand: value}
    else:
        diags.error(value.pos, f"{verb.name} takes a mapping of parameters; got {describe(value)}")
        return None
    parsed: dict[str, Any] = {}
    failed = False
    ctx.positions = {name: v.pos for name, v in given.items()}
    for name, (field_name, spec) in specs.items():
        if name not in given:
            if spec.required:
                diags.error(verb_pos, f"{verb.name} is missing required parameter '{name}'")
                failed = True
            continue
        try:
            parsed[field_name] = spec.kind(given[name], ctx)
        except p.Invalid as exc:
            written = name if name in value_keys(value) else None
            label = f"{verb.name} parameter '{name}'" if written else verb.name
            diags.error(exc.pos, f"{label}: {exc.message}")
            failed = True
    if failed:
        return None
    return verb.Params(**parsed)


def value_keys(value: YValue) -> list[str]:
    return value.keys() if isinstance(value, YMap) else []


def _read_transitions(
    node_id: str, value: YMap, verb: Verb[Any], params: Any, ctx: p.ParseContext,
    diags: Diagnostics,
) -> dict[str, Target] | None:
    transitions: dict[str, Target] = {}
    if params is not None:
        transitions.update(verb.option_targets(params))
    ok = True
    next_entry, on_entry = value.get("next"), value.get("on")
    if next_entry is not None:
        try:
            found = p.target(next_entry.value, ctx)
            transitions["next"] = Target(found.node, found.pos, next_entry.key_pos)
        except p.Invalid as exc:
            diags.error(exc.pos, f"'next': {exc.message}")
            ok = False
    if on_entry is not None:
        if not isinstance(on_entry.value, YMap):
            diags.error(on_entry.value.pos, f"'on' maps outcomes to nodes; got {describe(on_entry.value)}")
            return None
        for entry in on_entry.value.entries:
            if entry.key in transitions:
                diags.error(entry.key_pos, f"outcome '{entry.key}' of node '{node_id}' is given twice")
                ok = False
                continue
            try:
                found = p.target(entry.value, ctx)
                transitions[entry.key] = Target(found.node, found.pos, entry.key_pos)
            except p.Invalid as exc:
                diags.error(exc.pos, f"outcome '{entry.key}': {exc.message}")
                ok = False
    return transitions if ok else None


# --- flow sets: a main flow and its sub-flows -----------------------------


def resolve_subflow(base_file: str, written: str) -> Path:
    base = Path(base_file).parent
    candidate = base / written
    if candidate.suffix not in (".yaml", ".yml") and not is_file(candidate):
        candidate = candidate.with_name(candidate.name + ".yaml")
    return candidate


def is_file(path: Path) -> bool:
    """Path.is_file, but False for names the system cannot even look up (too long, NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def resolved_path(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, ValueError):
        return path.absolute()


def load_flow_set(
    path: str | Path, catalog: Catalog | None, diags: Diagnostics
) -> FlowSet | None:
    """Read a main flow and the sub-flows it calls, then check them together."""
    with collector_paused():
        return _load_flow_set(path, catalog, diags)


def _load_flow_set(
    path: str | Path, catalog: Catalog | None, diags: Diagnostics
) -> FlowSet | None:
    from ivr.flow.checker import check_flow_set

    main_path = Path(path)
    loaded: dict[Path, LoadedFlow | None] = {}
    pending = [main_path.resolve()]
    display: dict[Path, str] = {main_path.resolve(): str(main_path)}
    while pending:
        current = pending.pop()
        if current in loaded:
            continue
        item = read_flow_file(Path(display[current]), diags)
        loaded[current] = item
        if item is None:
            continue
        for node in item.flow.nodes.values():
            ref = REGISTRY[node.verb].subflow(node.params)
            if ref is None:
                continue
            sub = resolved_path(resolve_subflow(display[current], ref.path))
            display.setdefault(sub, str(resolve_subflow(display[current], ref.path)))
            if not is_file(sub):
                continue  # reported by the checker, at the `flow` parameter
            pending.append(sub)
    flows = {path_: item for path_, item in loaded.items() if item is not None}
    main = loaded.get(main_path.resolve())
    if main is None:
        return None
    return check_flow_set(main, flows, display, catalog, diags)


def load_flows(path: str | Path, catalog: Catalog | None = None) -> FlowSet:
    """Load and check; raise FlowError with every problem unless the flows are sound."""
    diags = Diagnostics()
    flows = load_flow_set(path, catalog, diags)
    if flows is None or diags.has_errors:
        raise FlowError(diags.sorted())
    return flows


__all__ = ["Diagnostic", "FlowError", "load_flow_set", "load_flows", "read_flow_text"]
