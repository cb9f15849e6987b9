"""MaxPool2d / AvgPool2d against torch, including ties, padding and overlapping windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from layer1_autograd import Tensor
from layer2_primitives import AvgPool2d, MaxPool2d
from tests.layer2.torch_compare import assert_close

F = torch.nn.functional

pool_args = dict(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    ties=st.booleans(),
    seed=st.integers(0, 2**16),
)


def _input(rng, shape, ties):
    # integer-valued inputs make many equal values: the gradient must go to the FIRST maximum
    return rng.integers(-2, 3, size=shape).astype(np.float64) if ties else rng.normal(size=shape)


@settings(max_examples=40, deadline=None)
@given(**pool_args)
def test_max_pool_matches_torch(n, c, h, w, kh, kw, sh, sw, ph, pw, ties, seed):
    assume(2 * ph <= kh and 2 * pw <= kw and kh <= h + 2 * ph and kw <= w + 2 * pw)
    rng = np.random.default_rng(seed)
    x = _input(rng, (n, c, h, w), ties)
    X = Tensor(x, requires_grad=True)
    y = MaxPool2d((kh, kw), (sh, sw), (ph, pw))(X)
    g = rng.normal(size=y.shape)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool2d(tx, (kh, kw), (sh, sw), (ph, pw))
    ty.backward(torch.tensor(g))
    assert_close(y, ty, "max_pool output")
    assert_close(X.grad, tx.grad, "max_pool grad")


@settings(max_examples=40, deadline=None)
@given(include=st.booleans(), **pool_args)
def test_avg_pool_matches_torch(n, c, h, w, kh, kw, sh, sw, ph, pw, ties, seed, include):
    assume(2 * ph <= kh and 2 * pw <= kw and kh <= h + 2 * ph and kw <= w + 2 * pw)
    rng = np.random.default_rng(seed)
    x = _input(rng, (n, c, h, w), ties)
    X = Tensor(x, requires_grad=True)
    y = AvgPool2d((kh, kw), (sh, sw), (ph, pw), count_include_pad=include)(X)
    g = rng.normal(size=y.shape)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, (kh, kw), (sh, sw), (ph, pw), count_include_pad=include)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, "avg_pool output")
    assert_close(X.grad, tx.grad, "avg_pool grad")


def test_pool_default_stride_is_kernel_and_dtype_kept(rng):
    x = Tensor(rng.normal(size=(2, 3, 8, 8)).astype(np.float32))
    assert MaxPool2d(2)(x).shape == (2, 3, 4, 4)
    assert AvgPool2d(2)(x).dtype == np.float32 and MaxPool2d(2)(x).dtype == np.float32


def test_pool_bad_input():
    with pytest.raises(
        ValueError, match=r"kernel \(3, 3\) is larger than the padded input \(2, 2\)"
    ):
        MaxPool2d(3)(Tensor(np.zeros((1, 1, 2, 2))))
    with pytest.raises(ValueError, match="at most half the kernel"):
        AvgPool2d(2, padding=2)(Tensor(np.zeros((1, 1, 8, 8))))
    with pytest.raises(ValueError, match="must have 4 dims"):
        MaxPool2d(2)(Tensor(np.zeros((8, 8))))
