"""Faults found by testing the engines from outside (issue 10, §6 "Engines"), each against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import F, Tensor, Value


def test_value_backward_twice_accumulates_only_in_leaves():
    # y = (a·a)·2 at a = 3: dy/da = 12, so two backward passes leave 24 in a.grad (torch).
    a = Value(3.0)
    y = (a * a) * 2
    y.backward()
    y.backward()
    ta = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    ty = (ta * ta) * 2
    ty.backward(retain_graph=True)
    ty.backward()
    assert a.grad == pytest.approx(ta.grad.item()), f"a.grad {a.grad}, torch {ta.grad.item()}"


def test_tensor_backward_twice_accumulates_only_in_leaves():
    x = np.array([3.0, -1.5])
    a = Tensor(x, requires_grad=True)
    y = ((a * a) * 2).sum()
    y.backward()
    y.backward()
    ta = torch.tensor(x, requires_grad=True)
    ty = ((ta * ta) * 2).sum()
    ty.backward(retain_graph=True)
    ty.backward()
    np.testing.assert_allclose(a.grad, ta.grad.numpy())


def test_float16_stays_float16_like_torch():
    x = np.array([0.5, -1.25, 2.0], dtype=np.float16)
    a = Tensor(x, requires_grad=True)
    ta = torch.tensor(x, requires_grad=True)
    for name, ours, ref in [
        ("mul", a * 2.0, ta * 2.0),
        ("exp", a.exp(), ta.exp()),
        ("sigmoid", a.sigmoid(), ta.sigmoid()),
        ("gelu", a.gelu(), torch.nn.functional.gelu(ta)),
    ]:
        assert ours.dtype == np.float16, f"{name}: dtype {ours.dtype}, torch {ref.dtype}"
        np.testing.assert_allclose(ours.data, ref.detach().numpy(), rtol=2e-3, err_msg=name)
    a.sigmoid().sum().backward()
    assert a.grad.dtype == np.float16


def test_broadcast_failure_names_both_shapes_and_the_op():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones(4))
    for op, fn in [("add", lambda: a + b), ("mul", lambda: a * b), ("pow", lambda: a**b)]:
        with pytest.raises(ValueError, match=rf"{op}.*\(2, 3\).*\(4,\)"):
            fn()


def test_logsumexp_of_an_all_minus_inf_row_is_minus_inf_and_its_gradient_is_finite():
    x = np.array([[-np.inf, -np.inf, -np.inf], [1.0, 2.0, 3.0]])
    a = Tensor(x, requires_grad=True)
    out = a.logsumexp(axis=-1)
    ta = torch.tensor(x, requires_grad=True)
    ref = torch.logsumexp(ta, dim=-1)
    np.testing.assert_array_equal(out.data, ref.detach().numpy())
    out.sum().backward()
    ref.sum().backward()
    # torch's gradient of the empty row is NaN; ours is zero there (no weight to spread), and
    # equal to torch's (softmax) on the finite row.
    np.testing.assert_array_equal(a.grad[0], np.zeros(3))
    np.testing.assert_allclose(a.grad[1], ta.grad[1].numpy(), rtol=1e-12)


def test_pow_gradients_at_zero_base_match_torch():
    base, expo = np.array([0.0, 0.0, 2.0]), np.array([2.0, 0.0, 0.0])
    a, b = Tensor(base, requires_grad=True), Tensor(expo, requires_grad=True)
    (a**b).sum().backward()
    ta, tb = torch.tensor(base, requires_grad=True), torch.tensor(expo, requires_grad=True)
    (ta**tb).sum().backward()
    np.testing.assert_allclose(a.grad, ta.grad.numpy())
    np.testing.assert_allclose(b.grad, tb.grad.numpy())


def test_indexing_with_a_float_tensor_is_refused_like_torch():
    x = Tensor(np.arange(5.0))
    with pytest.raises(IndexError, match="float64"):
        x[Tensor(np.array([1.7, 0.0]))]
    with pytest.raises(IndexError, match="float64"):
        x[Tensor(np.array([1.0])), ...]
    np.testing.assert_array_equal(x[np.array([3, 1])].data, [3.0, 1.0])  # integer arrays index


@pytest.mark.parametrize("bias_shape", [(1,), (), (2,)])
def test_linear_with_a_broadcast_bias_matches_torch(bias_shape):
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=bias_shape)
    ours = [Tensor(v, requires_grad=True) for v in (x, w, b)]
    ref = [torch.tensor(v, requires_grad=True) for v in (x, w, b)]
    g = rng.normal(size=(3, 2))
    out = F.linear(*ours)
    tout = torch.nn.functional.linear(*ref)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for t, r in zip(ours, ref, strict=True):
        np.testing.assert_allclose(t.grad, r.grad.numpy(), rtol=1e-12)


def test_linear_refuses_a_bias_that_does_not_broadcast():
    x, w = Tensor(np.ones((3, 4))), Tensor(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"bias.*\(3,\)"):
        F.linear(x, w, Tensor(np.ones(3)))
