"""Random expression graphs with shared sub-expressions, on both engines, against PyTorch
autograd (1e-10) and against central finite differences (layer 0's gradcheck)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from layer0_math import gradcheck
from layer1_autograd import Tensor, Value, no_grad

TOL = 1e-10

# Each op maps operands to an expression built only from methods/operators that Value, Tensor
# and torch.Tensor share. The compositions keep every value finite at any depth.
UNARY_OPS = {
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "relu": lambda a: a.relu(),
    "exp": lambda a: a.tanh().exp(),
    "log": lambda a: (a * a + 1.0).log(),
    "pow": lambda a: (a * a + 1.0) ** 0.5,
    "neg": lambda a: -a,
    "rsub": lambda a: 1.5 - a,
}
BINARY_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b.tanh(),
    "div": lambda a, b: a / (b * b + 1.0),
    "rdiv": lambda a, b: 2.0 / (a * a + 1.0) + b * 0.5,
}


@st.composite
def programs(draw, n_leaves: int):
    """A list of (op, operand indices); operands may be any earlier node, so nodes get reused."""
    steps = []
    for i in range(draw(st.integers(3, 25))):
        n_nodes = n_leaves + i
        if draw(st.booleans()):
            op = draw(st.sampled_from(sorted(UNARY_OPS)))
            steps.append((op, (draw(st.integers(0, n_nodes - 1)),)))
        else:
            op = draw(st.sampled_from(sorted(BINARY_OPS)))
            args = (draw(st.integers(0, n_nodes - 1)), draw(st.integers(0, n_nodes - 1)))
            steps.append((op, args))
    return steps


def run(program, leaves, total):
    """Evaluate the program; the output adds the last three nodes (so several paths meet)."""
    nodes = list(leaves)
    for op, args in program:
        fn = UNARY_OPS.get(op) or BINARY_OPS[op]
        nodes.append(fn(*(nodes[i] for i in args)))
    return total(nodes[-1] + nodes[-2] * 0.5 + nodes[-3])


@given(program=programs(3), xs=st.lists(st.floats(-2, 2), min_size=3, max_size=3))
@settings(max_examples=40)
def test_value_graphs_like_torch(program, xs):
    vals = [Value(x) for x in xs]
    refs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = run(program, vals, lambda v: v)
    ref = run(program, refs, lambda v: v)
    out.backward()
    ref.backward()
    np.testing.assert_allclose(out.data, ref.item(), rtol=TOL, atol=TOL)
    for v, r in zip(vals, refs, strict=True):
        ref_grad = 0.0 if r.grad is None else r.grad.item()  # None: the leaf was never used
        np.testing.assert_allclose(v.grad, ref_grad, rtol=TOL, atol=TOL)


@given(
    program=programs(3),
    seed=st.integers(0, 2**32 - 1),
    shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
)
@settings(max_examples=30)
def test_tensor_graphs_like_torch_and_finite_differences(program, seed, shapes):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-2, 2, s) for s in shapes.input_shapes]
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    refs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = run(program, ours, lambda t: t.sum())
    ref = run(program, refs, lambda t: t.sum())
    out.backward()
    ref.backward()
    np.testing.assert_allclose(out.item(), ref.item(), rtol=TOL, atol=TOL)
    grads = [
        np.zeros_like(a) if t.grad is None else t.grad for a, t in zip(arrays, ours, strict=True)
    ]
    for g, r in zip(grads, refs, strict=True):
        ref_grad = np.zeros_like(g) if r.grad is None else r.grad.numpy()
        np.testing.assert_allclose(g, ref_grad, rtol=TOL, atol=TOL)

    def f(*xs: np.ndarray) -> float:
        with no_grad():
            return run(program, [Tensor(x) for x in xs], lambda t: t.sum()).item()

    gradcheck(f, arrays, grads, eps=1e-6, atol=1e-6, rtol=1e-5)
