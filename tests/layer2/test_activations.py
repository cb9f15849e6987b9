"""ReLU, GELU (erf and tanh), SiLU, Tanh, Sigmoid against torch: values and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layer1_autograd import Tensor
from layer2_primitives import GELU, ReLU, Sigmoid, SiLU, Tanh
from tests.layer2.torch_compare import assert_close

CASES = [
    (ReLU(), torch.nn.ReLU()),
    (GELU(), torch.nn.GELU()),
    (GELU("tanh"), torch.nn.GELU(approximate="tanh")),
    (SiLU(), torch.nn.SiLU()),
    (Tanh(), torch.nn.Tanh()),
    (Sigmoid(), torch.nn.Sigmoid()),
]


@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 2**16))
@pytest.mark.parametrize(
    "ours, theirs", CASES, ids=["relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid"]
)
def test_activation_matches_torch(ours, theirs, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 4  # wide range: tails of sigmoid/tanh/gelu
    X, tx = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours(X), theirs(tx)
    g = rng.normal(size=y.shape)
    y.backward(g)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, f"{type(ours).__name__} output")
    assert_close(X.grad, tx.grad, f"{type(ours).__name__} grad")


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        GELU("fast")
