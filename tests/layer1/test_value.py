"""The scalar engine against PyTorch autograd (float64, 1e-10), op by op."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layer1_autograd import Value
from tests.layer1.close import assert_close

TOL = 1e-10
reals = st.floats(-3.0, 3.0, allow_nan=False)
positives = st.floats(0.1, 3.0)


def check(what: str, ours_fn, torch_fn, *xs: float) -> None:
    """``what`` (e.g. "x*y") and its gradient at ``xs`` equal PyTorch's, float64, to TOL."""
    vals = [Value(x) for x in xs]
    refs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = ours_fn(*vals)
    ref = torch_fn(*refs)
    out.backward()
    ref.backward()
    names = list(inspect.signature(ours_fn).parameters)
    at = ", ".join(f"{n}={x!r}" for n, x in zip(names, xs, strict=True))
    assert_close(out.data, ref.item(), f"{what} at {at}", TOL)
    for v, r, name in zip(vals, refs, names, strict=True):
        assert_close(v.grad, r.grad.item(), f"d({what})/d{name} at {at}", TOL)


@given(a=reals, b=reals.filter(lambda x: abs(x) > 0.05))
@settings(max_examples=40)
def test_binary_ops_like_torch(a, b):
    check("x+y", lambda x, y: x + y, lambda x, y: x + y, a, b)
    check("x-y", lambda x, y: x - y, lambda x, y: x - y, a, b)
    check("x*y", lambda x, y: x * y, lambda x, y: x * y, a, b)
    check("x/y", lambda x, y: x / y, lambda x, y: x / y, a, b)
    check("2.5-3x+1/y", lambda x, y: 2.5 - x * 3 + 1 / y, lambda x, y: 2.5 - x * 3 + 1 / y, a, b)


@given(a=positives, b=reals)
@settings(max_examples=40)
def test_powers_like_torch(a, b):
    check(f"x**{b!r}", lambda x: x**b, lambda x: x**b, a)
    check("x**y", lambda x, y: x**y, lambda x, y: x**y, a, b)
    check(f"{a!r}**y", lambda y: a**y, lambda y: a**y, b)
    check("x**3", lambda x: x**3, lambda x: x**3, b)


@given(a=reals.filter(lambda x: abs(x) > 1e-3))
@settings(max_examples=40)
def test_unary_ops_like_torch(a):
    check("exp(x)", lambda x: x.exp(), torch.exp, a)
    check("tanh(x)", lambda x: x.tanh(), torch.tanh, a)
    check("sigmoid(x)", lambda x: x.sigmoid(), torch.sigmoid, a)
    check("relu(x)", lambda x: x.relu(), torch.relu, a)
    check("log(x*x+0.5)", lambda x: (x * x + 0.5).log(), lambda x: torch.log(x * x + 0.5), a)
    check("-x", lambda x: -x, lambda x: -x, a)


def test_sigmoid_tails_keep_relative_precision():
    for x in (-800.0, -40.0, 40.0, 800.0):
        check("sigmoid(x)", lambda v: v.sigmoid(), torch.sigmoid, x)
    assert Value(-40.0).sigmoid().data == pytest.approx(math.exp(-40), rel=1e-12)


def test_reused_node_accumulates():
    a = Value(3.0)
    b = a * a + a  # d/da = 2a + 1
    c = b * b  # shared sub-expression b
    c.backward()
    assert a.grad == pytest.approx(2 * b.data * (2 * a.data + 1), rel=1e-15)
    assert b.grad == pytest.approx(2 * b.data, rel=1e-15)


def test_hundred_thousand_node_chain_has_no_recursion_error():
    x = Value(0.5)
    y = x
    for _ in range(100_000):
        y = y + 0.0
    y = y * 2.0
    y.backward()
    assert x.grad == 2.0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TypeError, match="str"):
        Value("1.0")
    with pytest.raises(TypeError, match="list"):
        Value(1.0) + [1.0]
    with pytest.raises(ValueError, match="positive.*-2"):
        Value(-2.0).log()
    with pytest.raises(ValueError, match="negative base"):
        Value(-2.0) ** 0.5
    with pytest.raises(ZeroDivisionError):
        Value(1.0) / 0.0
