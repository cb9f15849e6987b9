"""Graph drawing: the traced graph matches the expression, edges point forward, DOT is complete."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from layer1_autograd import Tensor, Value  # noqa: E402
from layer1_autograd.draw import draw_graph, layout, to_dot, trace  # noqa: E402


def _neuron() -> Value:
    x1, x2, w1, w2, b = (
        Value(v, label=n)
        for v, n in [(2.0, "x1"), (0.0, "x2"), (-3.0, "w1"), (1.0, "w2"), (6.88, "b")]
    )
    n = x1 * w1 + x2 * w2 + b
    out = n.tanh()
    out.backward()
    return out


def test_trace_counts_every_value_and_operation():
    out = _neuron()
    nodes, edges = trace(out)
    values = [n for n in nodes if not n.is_op]
    ops = [n for n in nodes if n.is_op]
    assert len(values) == len(out.topological_order()) == 10
    assert sorted(n.label for n in ops) == ["*", "*", "+", "+", "tanh"]
    # each op has one edge out and one edge in per operand: 4 binary ops + 1 unary
    assert len(edges) == len(ops) + 2 * 4 + 1


def test_layout_points_every_edge_forward_without_overlaps():
    nodes, edges = trace(_neuron())
    pos = layout(nodes, edges)
    assert all(pos[dst][0] > pos[src][0] for src, dst in edges)
    assert len(set(pos.values())) == len(nodes)


def test_dot_and_png(tmp_path):
    out = _neuron()
    dot = to_dot(out)
    nodes, edges = trace(out)
    assert dot.startswith("digraph") and dot.count("->") == len(edges)
    assert "x1 | data 2 | grad" in dot
    fig = draw_graph(out, title="neuron")
    fig.savefig(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 5000
    t = Tensor(np.ones((2, 3)), requires_grad=True)
    assert to_dot((t * 2).sum()).count("->") == 5  # t and the constant 2 feed the product
