"""Conv2d against torch.nn.functional.conv2d: forward and all gradients at float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from layer1_autograd import Tensor
from layer2_primitives import Conv2d, conv2d
from tests.layer2.torch_compare import assert_close, copy_params


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    groups=st.integers(1, 3),
    cin_g=st.integers(1, 3),
    cout_g=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_conv2d_matches_torch(n, groups, cin_g, cout_g, kh, kw, sh, sw, ph, pw, h, w, bias, seed):
    assume(kh <= h + 2 * ph and kw <= w + 2 * pw)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, cin_g * groups, h, w))
    wt = rng.normal(size=(cout_g * groups, cin_g, kh, kw))
    b = rng.normal(size=cout_g * groups) if bias else None
    X, W = Tensor(x, requires_grad=True), Tensor(wt, requires_grad=True)
    B = Tensor(b, requires_grad=True) if bias else None
    y = conv2d(X, W, B, (sh, sw), (ph, pw), groups)
    g = rng.normal(size=y.shape)
    y.backward(g)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(wt, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, (sh, sw), (ph, pw), 1, groups)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, "output")
    assert_close(X.grad, tx.grad, "grad x")
    assert_close(W.grad, tw.grad, "grad weight")
    if bias:
        assert_close(B.grad, tb.grad, "grad bias")


def test_conv2d_module_mirrors_torch_layout(rng):
    ours = Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2, rng=rng, dtype=np.float64)
    theirs = torch.nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2).double()
    copy_params(ours, theirs)  # same names and shapes: weight (6, 2, 3, 2), bias (6,)
    x = rng.normal(size=(2, 4, 7, 6))
    assert_close(ours(Tensor(x)), theirs(torch.tensor(x)), "module output")
    big = Conv2d(8, 64, 3, rng=rng)  # torch's init: U(-b, b) with b = 1/sqrt(fan_in = 8*3*3)
    bound = 1 / np.sqrt(72)
    assert big.weight.dtype == np.float32 and np.abs(big.weight.data).max() <= bound
    assert abs(big.weight.data.std() - bound / np.sqrt(3)) < 0.05 * bound  # std of U(-b, b)


def test_conv2d_float32_stays_float32(rng):
    conv = Conv2d(3, 5, 3, padding=1, rng=rng)
    x = Tensor(rng.normal(size=(2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    y = conv(x)
    y.backward(np.ones(y.shape, np.float32))
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert conv.weight.grad.dtype == np.float32


def test_conv2d_channel_mismatch_names_shapes(rng):
    conv = Conv2d(3, 4, 3, rng=rng, dtype=np.float64)
    with pytest.raises(ValueError, match=r"input has 5 channels.*\(1, 5, 8, 8\).*\(4, 3, 3, 3\)"):
        conv(Tensor(np.zeros((1, 5, 8, 8))))


def test_conv2d_kernel_larger_than_padded_input(rng):
    conv = Conv2d(1, 1, 5, padding=1, rng=rng, dtype=np.float64)
    with pytest.raises(
        ValueError, match=r"kernel \(5, 5\) is larger than the padded input \(4, 4\)"
    ):
        conv(Tensor(np.zeros((1, 1, 2, 2))))


def test_conv2d_bad_arguments(rng):
    with pytest.raises(ValueError, match="groups=2 must divide"):
        Conv2d(3, 4, 3, groups=2, rng=rng)
    with pytest.raises(ValueError, match="must have 4 dims"):
        Conv2d(3, 4, 3, rng=rng)(Tensor(np.zeros((3, 8, 8), np.float32)))
    with pytest.raises(TypeError, match="mixed dtypes"):
        Conv2d(3, 4, 3, rng=rng)(Tensor(np.zeros((1, 3, 8, 8))))
