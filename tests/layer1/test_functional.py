"""Fused ops (linear, cross-entropy, mse) against PyTorch, and their input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layer1_autograd import F, Tensor

TOL = 1e-10


@given(
    n=st.integers(1, 6),
    c=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    reduction=st.sampled_from(["mean", "sum", "none"]),
)
@settings(max_examples=25)
def test_cross_entropy_like_torch(n, c, seed, reduction):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 5, (n, c))
    t = rng.integers(0, c, n)
    ours = Tensor(z, requires_grad=True)
    ref = torch.tensor(z, requires_grad=True)
    out = F.cross_entropy(ours, t, reduction=reduction)
    ref_out = torch.nn.functional.cross_entropy(ref, torch.tensor(t), reduction=reduction)
    np.testing.assert_allclose(out.data, ref_out.detach().numpy(), rtol=TOL, atol=TOL)
    upstream = rng.normal(size=out.shape)
    out.backward(upstream)
    ref_out.backward(torch.tensor(upstream))
    np.testing.assert_allclose(ours.grad, ref.grad.numpy(), rtol=TOL, atol=TOL)


def test_cross_entropy_stable_for_huge_logits():
    z = Tensor(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]), requires_grad=True)
    loss = F.cross_entropy(z, np.array([0, 2]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), np.log(2) / 2, rtol=1e-12)
    assert np.all(np.isfinite(z.grad))


@pytest.mark.parametrize("lead", [(), (4,), (2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_like_torch(lead, bias):
    rng = np.random.default_rng(len(lead))
    x, w, b = rng.normal(size=(*lead, 5)), rng.normal(size=(3, 5)), rng.normal(size=3)
    ours = [Tensor(a, requires_grad=True) for a in (x, w, b)]
    refs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    out = F.linear(ours[0], ours[1], ours[2] if bias else None)
    ref = torch.nn.functional.linear(refs[0], refs[1], refs[2] if bias else None)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=TOL, atol=TOL)
    g = rng.normal(size=out.shape)
    out.backward(g)
    ref.backward(torch.tensor(g))
    for o, r in zip(ours[: 2 + bias], refs[: 2 + bias], strict=True):
        np.testing.assert_allclose(o.grad, r.grad.numpy(), rtol=TOL, atol=TOL)


def test_mse_loss_like_torch():
    rng = np.random.default_rng(0)
    p, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ours, ref = Tensor(p, requires_grad=True), torch.tensor(p, requires_grad=True)
    for reduction in ("mean", "sum"):
        ours.grad, ref.grad = None, None
        out = F.mse_loss(ours, y, reduction)
        ref_out = torch.nn.functional.mse_loss(ref, torch.tensor(y), reduction=reduction)
        out.backward()
        ref_out.backward()
        np.testing.assert_allclose(out.item(), ref_out.item(), rtol=TOL)
        np.testing.assert_allclose(ours.grad, ref.grad.numpy(), rtol=TOL, atol=TOL)


def test_bad_inputs_are_clear_errors():
    z = Tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\[0, 4\).*\[0, 7\]"):
        F.cross_entropy(z, np.array([0, 1, 7]))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        F.cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        F.cross_entropy(Tensor(np.zeros(4)), np.array([0]))
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(3, 4\)"):
        F.linear(Tensor(np.zeros((2, 5))), Tensor(np.zeros((3, 4))))
    with pytest.raises(TypeError, match="float32.*float64"):
        F.linear(Tensor(np.zeros((2, 4), np.float32)), Tensor(np.zeros((3, 4))))


def test_fused_ops_keep_float32():
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(4, 3)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.normal(size=(5, 3)).astype(np.float32), requires_grad=True)
    b = Tensor(np.zeros(5, np.float32), requires_grad=True)
    logits = F.linear(x, w, b)
    loss = F.cross_entropy(logits, np.array([0, 1, 4, 2])) + F.mse_loss(logits, np.zeros((4, 5)))
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    loss.backward()
    assert {t.grad.dtype for t in (x, w, b)} == {np.dtype(np.float32)}
