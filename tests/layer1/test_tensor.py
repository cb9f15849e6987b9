"""The tensor engine against PyTorch autograd (float64, 1e-10): every op, forward and backward,
over random shapes that exercise broadcasting corners (scalars, size-1 axes, leading batch axes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

from layer1_autograd import Tensor, concatenate, no_grad, stack

TOL = 1e-10
seeds = st.integers(0, 2**32 - 1)


def assert_close(ours: np.ndarray, ref: torch.Tensor | np.ndarray, what: str) -> None:
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape}, torch {ref.shape}"
    np.testing.assert_allclose(ours, ref, rtol=TOL, atol=TOL, err_msg=what)


def compare(op, torch_op, arrays: list[np.ndarray], rng: np.random.Generator) -> None:
    """Run ``op`` on Tensors and ``torch_op`` on torch tensors; compare output and gradients.

    The upstream gradient is random (not ones) so every entry of each Jacobian matters.
    """
    ours_in = [Tensor(a, requires_grad=True) for a in arrays]
    ref_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = op(*ours_in)
    ref = torch_op(*ref_in)
    assert_close(out.data, ref, "forward")
    upstream = rng.normal(size=out.shape)
    out.backward(upstream)
    ref.backward(torch.tensor(upstream))
    for i, (t, r) in enumerate(zip(ours_in, ref_in, strict=True)):
        assert t.grad is not None, f"input {i} got no gradient"
        assert t.grad.dtype == np.float64
        assert_close(t.grad, r.grad, f"grad of input {i}")


broadcast_pairs = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4)

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "pow": (lambda a, b: a**b, lambda a, b: a**b),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=broadcast_pairs, seed=seeds)
@settings(max_examples=15)
def test_binary_ops_broadcast_like_torch(name, shapes, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a = rng.uniform(0.5, 2.0, sa)  # positive: valid base for pow, safe divisor
    b = rng.uniform(0.5, 2.0, sb) * rng.choice([-1.0, 1.0], sb)
    if name == "pow":
        b = np.abs(b)
    ours, ref = BINARY[name]
    compare(ours, ref, [a, b], rng)


@given(
    shape=array_shapes(min_dims=0, max_dims=3, max_side=4),
    seed=seeds,
    scalar=st.floats(-3, 3).filter(lambda s: abs(s) > 0.1),
)
@settings(max_examples=20)
def test_scalar_operands_left_and_right(shape, seed, scalar):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 2.0, shape)
    cases = [
        (lambda x: x + scalar, lambda x: x + scalar),
        (lambda x: scalar + x, lambda x: scalar + x),
        (lambda x: scalar - x, lambda x: scalar - x),
        (lambda x: x * scalar, lambda x: x * scalar),
        (lambda x: scalar / x, lambda x: scalar / x),
        (lambda x: x**scalar, lambda x: x**scalar),
        (lambda x: abs(scalar) ** x, lambda x: abs(scalar) ** x),
        (lambda x: -x, lambda x: -x),
        (lambda x: x**2, lambda x: x**2),
    ]
    for ours, ref in cases:
        compare(ours, ref, [a], rng)


UNARY = {
    "exp": (Tensor.exp, torch.exp),
    "log": (Tensor.log, torch.log),
    "tanh": (Tensor.tanh, torch.tanh),
    "sigmoid": (Tensor.sigmoid, torch.sigmoid),
    "relu": (Tensor.relu, torch.relu),
    "gelu": (Tensor.gelu, torch.nn.functional.gelu),
    "gelu_tanh": (
        lambda x: x.gelu("tanh"),
        lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    ),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=array_shapes(min_dims=0, max_dims=4, max_side=5), seed=seeds)
@settings(max_examples=15)
def test_elementwise_maps_like_torch(name, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, shape)
    if name == "log":
        x = np.abs(x) + 0.1
    if name == "relu":
        x = np.where(np.abs(x) < 1e-3, 0.5, x)  # the kink has no derivative to compare
    ours, ref = UNARY[name]
    compare(ours, ref, [x], rng)


def test_sigmoid_is_stable_at_extremes():
    x = Tensor(np.array([-800.0, -40.0, 0.0, 40.0, 800.0]), requires_grad=True)
    s = x.sigmoid()
    s.sum().backward()
    ref = torch.sigmoid(torch.tensor(x.data))
    assert np.all(np.isfinite(s.data)) and np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(s.data, ref.numpy(), rtol=1e-12, atol=1e-300)


@st.composite
def shape_and_axis(draw, min_dims=0):
    shape = draw(array_shapes(min_dims=min_dims, max_dims=4, min_side=1, max_side=4))
    ndim = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]) if ndim else st.just("none"))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        axis = tuple(draw(st.sets(st.integers(0, ndim - 1), min_size=1)))
    return shape, axis, draw(st.booleans())


def _torch_dims(axis, ndim):
    return tuple(range(ndim)) if axis is None else axis


@given(case=shape_and_axis(), seed=seeds)
@settings(max_examples=30)
def test_reductions_like_torch(case, seed):
    shape, axis, keepdims = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    dims = _torch_dims(axis, len(shape))
    compare(lambda t: t.sum(axis, keepdims), lambda t: t.sum(dim=dims, keepdim=keepdims), [x], rng)
    compare(
        lambda t: t.mean(axis, keepdims), lambda t: t.mean(dim=dims, keepdim=keepdims), [x], rng
    )
    compare(lambda t: t.max(axis, keepdims), lambda t: t.amax(dim=dims, keepdim=keepdims), [x], rng)
    compare(
        lambda t: t.logsumexp(axis, keepdims),
        lambda t: torch.logsumexp(t, dim=dims, keepdim=keepdims),
        [x],
        rng,
    )


def test_max_shares_gradient_between_ties_like_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    compare(lambda t: t.max(axis=1), lambda t: t.amax(dim=1), [x], np.random.default_rng(0))
    compare(lambda t: t.max(), lambda t: t.amax(), [x], np.random.default_rng(1))


@given(case=shape_and_axis(min_dims=1), seed=seeds)
@settings(max_examples=25)
def test_softmax_family_like_torch(case, seed):
    shape, _, _ = case
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, shape)
    axis = int(rng.integers(-len(shape), len(shape)))
    compare(lambda t: t.softmax(axis), lambda t: torch.softmax(t, dim=axis), [x], rng)
    compare(lambda t: t.log_softmax(axis), lambda t: torch.log_softmax(t, dim=axis), [x], rng)


def test_softmax_family_is_stable_for_huge_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [5e4, 5e4, 5e4]])
    for op in (lambda t: t.softmax(1), lambda t: t.log_softmax(1), lambda t: t.logsumexp(1)):
        t = Tensor(x, requires_grad=True)
        out = op(t)
        out.sum().backward()
        assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(t.grad))


matmul_cases = st.sampled_from(
    [
        ((3,), (3,)),
        ((3,), (3, 4)),
        ((2, 3), (3,)),
        ((2, 3), (3, 4)),
        ((5, 2, 3), (3, 4)),
        ((2, 3), (5, 3, 4)),
        ((1, 2, 3), (5, 3, 4)),
        ((6, 1, 2, 3), (5, 3, 1)),
        ((4,), (2, 4, 3)),
        ((2, 1, 4), (4,)),
        ((1, 1), (1, 1)),
    ]
)


@given(shapes=matmul_cases, seed=seeds)
@settings(max_examples=25)
def test_matmul_batched_and_1d_like_torch(shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    compare(lambda x, y: x @ y, torch.matmul, [a, b], rng)


@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=4), seed=seeds)
@settings(max_examples=25)
def test_reshape_and_transpose_like_torch(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    perm = tuple(int(i) for i in rng.permutation(len(shape)))
    compare(lambda t: t.transpose(*perm), lambda t: t.permute(*perm), [x], rng)
    compare(lambda t: t.T, lambda t: t.permute(*reversed(range(len(shape)))), [x], rng)
    compare(lambda t: t.reshape(-1), lambda t: t.reshape(-1), [x], rng)
    new = (int(np.prod(shape[:1])), -1)
    compare(lambda t: t.reshape(new), lambda t: t.reshape(new), [x], rng)


def test_indexing_like_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4, 3))
    idx = np.array([0, 3, 3, 1, 0])  # repeated rows must accumulate
    cases = [
        lambda t: t[1],
        lambda t: t[1:4, ::2],
        lambda t: t[..., -1],
        lambda t: t[idx],
        lambda t: t[idx, 2],
        lambda t: t[idx, np.array([0, 1, 2, 3, 0])],
        lambda t: t[:, None, 1:3],
    ]
    for case in cases:
        compare(case, case, [x], rng)
    rows = np.array([4, 0, 4])  # an integer array inside a tuple (a float Tensor is refused)
    compare(lambda t: t[rows, 1], lambda t: t[torch.tensor(rows), 1], [x], rng)
    mask = x[:, 0, 0] > 0
    compare(lambda t: t[mask], lambda t: t[torch.tensor(mask)], [x], rng)


@given(seed=seeds, axis=st.integers(-2, 1))
@settings(max_examples=15)
def test_concatenate_and_stack_like_torch(seed, axis):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(3, 2)) for _ in range(3)]
    compare(lambda *ts: concatenate(ts, axis), lambda *ts: torch.cat(ts, dim=axis), xs, rng)
    compare(lambda *ts: stack(ts, axis), lambda *ts: torch.stack(ts, dim=axis), xs, rng)


# ------------------------------------------------------------------ engine semantics
def test_reused_tensor_accumulates_and_grads_accumulate_across_calls():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x + x  # x used three times
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1 + 3.0)


def test_only_parents_requiring_grad_get_gradients():
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = Tensor(np.ones((3, 4)))
    (a @ b).sum().backward()
    assert b.grad is None
    np.testing.assert_allclose(a.grad, np.full((2, 3), 4.0))


def test_no_grad_records_no_graph():
    a = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        b = (a * 2).exp().sum()
    assert not b.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        b.backward()
    c = (a * 2).sum()
    assert c.requires_grad


def test_from_op_custom_operation():
    """A user-defined op (cube) via from_op, used twice, matches torch."""

    def cube(t: Tensor) -> Tensor:
        return Tensor.from_op(t.data**3, (t,), lambda g: (3 * t.data**2 * g,), name="cube")

    x = np.array([0.5, -1.0, 2.0])
    compare(
        lambda t: cube(t) * cube(t) + cube(t),
        lambda t: t**3 * t**3 + t**3,
        [x],
        np.random.default_rng(0),
    )
    with no_grad():
        assert not cube(Tensor(x, requires_grad=True)).requires_grad
    assert not cube(Tensor(x)).requires_grad


def test_from_op_rejects_a_gradient_of_the_wrong_shape():
    x = Tensor(np.ones(3), requires_grad=True)
    bad = Tensor.from_op(x.data.sum(), (x,), lambda g: (np.ones(4),), name="badsum")
    with pytest.raises(ValueError, match=r"badsum.*\(4,\).*\(3,\)"):
        bad.backward()


def test_ten_thousand_node_chain_backpropagates_without_recursion():
    x = Tensor(np.array(0.5), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001**10_000, rtol=1e-9)


def test_float32_stays_float32_and_python_scalars_adopt_it():
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(4, 3)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.normal(size=(3, 2)).astype(np.float32), requires_grad=True)
    y = ((x @ w) * 2.5 + 1).tanh().softmax(1).log().mean() ** 2
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    assert Tensor([1, 2]).dtype == np.float64
    assert Tensor(np.arange(3)).dtype == np.float64
    assert Tensor([1, 2], dtype=np.float32).dtype == np.float32


# ------------------------------------------------------------------------ bad input
def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 2, 3\).*\(3, 3, 4\)"):
        Tensor(np.ones((2, 2, 3))) @ Tensor(np.ones((3, 3, 4)))


def test_backward_on_non_scalar_without_grad_says_so():
    y = Tensor(np.ones(3), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"scalar.*\(3,\)"):
        y.backward()


def test_mixed_dtypes_name_both():
    a = Tensor(np.ones(2, dtype=np.float32))
    b = Tensor(np.ones(2, dtype=np.float64))
    with pytest.raises(TypeError, match="float32.*float64"):
        a + b
    with pytest.raises(TypeError, match="float32.*float64"):
        a @ b.reshape(2, 1)
    with pytest.raises(TypeError, match="mixed dtypes"):
        concatenate([a, b])


def test_non_numeric_inputs_name_the_type():
    with pytest.raises(TypeError, match="str"):
        Tensor("abc")
    with pytest.raises(TypeError, match="str"):
        Tensor(np.ones(2)) * "x"
    with pytest.raises(TypeError, match="NoneType"):
        Tensor(np.ones(2)) + None
    with pytest.raises(TypeError, match="int8|float32 or float64"):
        Tensor([1.0], dtype=np.int8)


FLOAT32_OPS = {
    **{name: ours for name, (ours, _) in UNARY.items()},
    "softmax": lambda t: t.softmax(0),
    "log_softmax": lambda t: t.log_softmax(0),
    "logsumexp": lambda t: t.logsumexp(0),
    "max": lambda t: t.max(0),
    "mean": lambda t: t.mean(),
    "pow": lambda t: t**1.5,
    "rpow": lambda t: 2.0**t,
    "div": lambda t: 1.0 / t,
    "getitem": lambda t: t[np.array([0, 0, 2])],
    "matmul": lambda t: t @ t,
}


@pytest.mark.parametrize("name", sorted(FLOAT32_OPS))
def test_every_op_keeps_float32(name):
    x = Tensor(np.array([0.5, 1.5, 2.5], dtype=np.float32), requires_grad=True)
    out = FLOAT32_OPS[name](x)
    assert out.dtype == np.float32, f"{name} forward gave {out.dtype}"
    out.sum().backward()
    assert x.grad.dtype == np.float32, f"{name} gradient is {x.grad.dtype}"


def test_astype_detach_item_numpy():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad, 2 * x.data)
    d = x.detach()
    assert not d.requires_grad and d.numpy() is x.data
    assert Tensor(np.array([[3.0]])).item() == 3.0
    with pytest.raises(ValueError, match="one element"):
        x.item()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected \(2,\)"):
        (x * 2).backward(np.ones(3))
