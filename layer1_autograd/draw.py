"""Drawing a computation graph: DOT text, and a PNG laid out and drawn with matplotlib alone.

The graph of an expression is a DAG: data nodes (a :class:`Value` or :class:`Tensor`) and,
between them, operation nodes (``+``, ``tanh``...), each with edges from its inputs to its
output. Drawing it needs no Graphviz binary: a *layered* layout (Sugiyama et al., 1981)
suffices for small graphs.

1. Layer assignment: a node's column is the length of the longest path reaching it from a leaf,
   so every edge points rightwards.
2. Ordering within a column: start in discovery order, then sweep left to right a few times,
   sorting each column by the mean row of its predecessors (the *barycentre* heuristic), which
   removes most edge crossings.
3. Coordinates: column → x, rank in column → y (centred); edges are arrows, data nodes are boxes
   showing value and gradient, operation nodes are circles.

``to_dot`` writes the same graph in Graphviz's DOT language for anyone who has ``dot`` installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from layer1_autograd.tensor import Tensor
from layer1_autograd.value import Value

__all__ = ["GraphNode", "trace", "layout", "to_dot", "draw_graph"]


@dataclass(frozen=True)
class GraphNode:
    key: str
    label: str
    is_op: bool


def _inputs(node: Value | Tensor) -> tuple[Any, ...]:
    return node._children if isinstance(node, Value) else node._parents


def _describe(node: Value | Tensor) -> str:
    if isinstance(node, Value):
        name = f"{node.label} | " if node.label else ""
        return f"{name}data {node.data:.4g} | grad {node.grad:.4g}"
    name = "x".join(map(str, node.shape)) or "scalar"
    grad = "" if node.grad is None else f" | grad norm {np.linalg.norm(node.grad):.3g}"
    return f"{node.dtype} {name}{grad}"


def trace(root: Value | Tensor) -> tuple[list[GraphNode], list[tuple[str, str]]]:
    """Nodes (data and op nodes) and edges (src key, dst key) of the graph ending at ``root``."""
    if not isinstance(root, Value | Tensor):
        raise TypeError(f"trace needs a Value or Tensor, got {type(root).__name__}")
    nodes: list[GraphNode] = []
    edges: list[tuple[str, str]] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        key = f"n{id(node)}"
        nodes.append(GraphNode(key, _describe(node), False))
        inputs = _inputs(node)
        if inputs:
            op_key = f"{key}_op"
            nodes.append(GraphNode(op_key, node._op or "op", True))
            edges.append((op_key, key))
            for child in inputs:
                edges.append((f"n{id(child)}", op_key))
                stack.append(child)
    return nodes, edges


def layout(
    nodes: list[GraphNode], edges: list[tuple[str, str]], sweeps: int = 4
) -> dict[str, tuple[float, float]]:
    """(x, y) per node key: longest-path columns, barycentre-ordered rows."""
    preds: dict[str, list[str]] = {n.key: [] for n in nodes}
    succs: dict[str, list[str]] = {n.key: [] for n in nodes}
    for src, dst in edges:
        preds[dst].append(src)
        succs[src].append(dst)
    # Kahn's algorithm gives a topological order in which to relax longest-path depths.
    indegree = {k: len(v) for k, v in preds.items()}
    queue = [n.key for n in nodes if indegree[n.key] == 0]
    depth = dict.fromkeys(queue, 0)
    order = []
    while queue:
        k = queue.pop()
        order.append(k)
        for s in succs[k]:
            depth[s] = max(depth.get(s, 0), depth[k] + 1)
            indegree[s] -= 1
            if indegree[s] == 0:
                queue.append(s)
    if len(order) != len(nodes):
        raise ValueError("layout: the graph has a cycle")
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(depth[n.key], []).append(n.key)
    row: dict[str, float] = {}
    for col in columns.values():
        row.update({k: float(i) for i, k in enumerate(col)})
    for _ in range(sweeps):
        for d in sorted(columns)[1:]:
            col = columns[d]
            col.sort(key=lambda k: np.mean([row[p] for p in preds[k]]) if preds[k] else row[k])
            row.update({k: float(i) for i, k in enumerate(col)})
    height = max(len(c) for c in columns.values())
    return {
        k: (float(d), row[k] - (len(columns[d]) - 1) / 2 + (height - 1) / 2)
        for d in columns
        for k in columns[d]
    }


def to_dot(root: Value | Tensor, name: str = "computation") -> str:
    """Graphviz DOT text, left to right: records for data nodes, ellipses for operations."""
    nodes, edges = trace(root)
    lines = [f"digraph {name} {{", "  rankdir=LR;"]
    for n in nodes:
        label = n.label.replace('"', r"\"")
        shape = "ellipse" if n.is_op else "record"
        lines.append(f'  {n.key} [label="{label}", shape={shape}];')
    lines.extend(f"  {src} -> {dst};" for src, dst in edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_graph(root: Value | Tensor, title: str = "") -> Any:
    """A matplotlib Figure of the graph (save it with ``ctx.savefig``)."""
    import matplotlib.pyplot as plt

    nodes, edges = trace(root)
    pos = layout(nodes, edges)
    n_cols = max(x for x, _ in pos.values()) + 1
    n_rows = max(y for _, y in pos.values()) + 1
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * n_cols), max(3.0, 0.9 * n_rows)))
    for src, dst in edges:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "->",
                "color": "0.45",
                "shrinkA": 14,
                "shrinkB": 14,
                "lw": 1.0,
            },
        )
    for n in nodes:
        x, y = pos[n.key]
        if n.is_op:
            style = {"boxstyle": "circle,pad=0.3", "fc": "#fde9c9", "ec": "#c77d00"}
            ax.text(x, y, n.label, ha="center", va="center", fontsize=9, bbox=style)
        else:
            style = {"boxstyle": "round,pad=0.35", "fc": "#dbe9f6", "ec": "#2b6ca3"}
            ax.text(
                x,
                y,
                n.label.replace(" | ", "\n"),
                ha="center",
                va="center",
                fontsize=7.5,
                bbox=style,
            )
    ax.set_xlim(-0.6, n_cols - 0.4)
    ax.set_ylim(-0.8, n_rows - 0.2)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig
