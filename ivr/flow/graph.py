"""Pictures of a flow: Graphviz DOT (and SVG through `dot`) or Mermaid.

Nodes are shaped and coloured by verb, edges labelled by outcome, sub-flow calls
dashed, and nodes that cannot be reached from the start are drawn in red.
"""

from __future__ import annotations

import shutil
import subprocess

from ivr.flow.model import Flow

_SHAPES = {
    "say": ("box", "#e8f1fb"),
    "menu": ("hexagon", "#fff3cd"),
    "collect": ("parallelogram", "#fff3cd"),
    "branch": ("diamond", "#eeeeee"),
    "set": ("note", "#f5f5f5"),
    "call": ("component", "#e2f0d9"),
    "return": ("cds", "#e2f0d9"),
    "transfer": ("doubleoctagon", "#fde2e4"),
    "hangup": ("doublecircle", "#fde2e4"),
}


class GraphvizMissing(Exception):
    pass


def reachable(flow: Flow) -> set[str]:
    seen = {flow.start} if flow.start in flow.nodes else set()
    todo = list(seen)
    while todo:
        for target in flow.nodes[todo.pop()].transitions.values():
            if target.node in flow.nodes and target.node not in seen:
                seen.add(target.node)
                todo.append(target.node)
    return seen


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(flow: Flow) -> str:
    live = reachable(flow)
    lines = [
        f"digraph {_q(flow.id)} {{",
        f"  label={_q(f'{flow.id} v{flow.version}')}; labelloc=t; rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=11, style=filled];',
        '  edge [fontname="Helvetica", fontsize=9];',
        '  "__start__" [shape=point, width=0.15, label=""];',
        f'  "__start__" -> {_q(flow.start)};',
    ]
    for node in flow.nodes.values():
        shape, fill = _SHAPES.get(node.verb, ("box", "#ffffff"))
        extra = ""
        if node.id not in live:
            fill, extra = "#ffcccc", ', color="#cc0000", fontcolor="#cc0000", peripheries=2'
        label = f"{node.id}\\n({node.verb})" + ("\\nUNREACHABLE" if node.id not in live else "")
        lines.append(f'  {_q(node.id)} [label="{label}", shape={shape}, fillcolor="{fill}"{extra}];')
    for node in flow.nodes.values():
        for outcome, target in node.transitions.items():
            style = ', style=dashed' if node.verb == "call" else ""
            lines.append(f"  {_q(node.id)} -> {_q(target.node)} [label={_q(outcome)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(flow: Flow) -> str:
    live = reachable(flow)
    ids = {node_id: f"n{i}" for i, node_id in enumerate(flow.nodes)}
    lines = ["flowchart TD", f"  start((start)) --> {ids.get(flow.start, 'missing')}"]
    for node in flow.nodes.values():
        label = f"{node.id}<br/>{node.verb}".replace('"', "'")
        open_, close = {"menu": ("{{", "}}"), "branch": ("{", "}"), "hangup": ("((", "))"),
                        "transfer": ("[[", "]]")}.get(node.verb, ("[", "]"))
        lines.append(f'  {ids[node.id]}{open_}"{label}"{close}')
    for node in flow.nodes.values():
        for outcome, target in node.transitions.items():
            dest = ids.get(target.node)
            if dest is not None:
                arrow = "-.->" if node.verb == "call" else "-->"
                lines.append(f'  {ids[node.id]} {arrow}|"{outcome}"| {dest}')
    for node_id in flow.nodes:
        if node_id not in live:
            lines.append(f"  style {ids[node_id]} fill:#fcc,stroke:#c00,stroke-width:2px")
    return "\n".join(lines) + "\n"


def to_svg(flow: Flow) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing(
            "Graphviz's 'dot' program is not installed; install it with "
            "'apt-get install graphviz' (Debian/Ubuntu) or 'brew install graphviz' (macOS), "
            "or use --format dot or --format mermaid"
        )
    done = subprocess.run([dot, "-Tsvg"], input=to_dot(flow).encode(), capture_output=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode("utf-8")
