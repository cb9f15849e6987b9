"""Dropout: inverted scaling, train vs eval, seeded masks; torch given the same mask agrees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import Tensor
from layer2_primitives import Dropout
from tests.layer2.torch_compare import assert_close


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_train_matches_masked_torch(p, rng):
    x = rng.normal(size=(40, 50)) + 3.0  # nonzero inputs: a zero output means "dropped"
    layer = Dropout(p, rng=np.random.default_rng(7))
    X = Tensor(x, requires_grad=True)
    y = layer(X)
    g = rng.normal(size=y.shape)
    y.backward(g)
    mask = torch.tensor(y.data != 0)
    tx = torch.tensor(x, requires_grad=True)
    ty = tx * mask / (1 - p)  # torch's dropout formula, given our mask
    ty.backward(torch.tensor(g))
    assert_close(y, ty, "dropout output")
    assert_close(X.grad, tx.grad, "dropout grad")
    kept = float(mask.double().mean())
    sd = np.sqrt(p * (1 - p) / x.size)
    assert abs((1 - kept) - p) < 5 * sd, (
        f"dropped fraction {1 - kept:.3f}, expected {p} +- {5 * sd:.3f}"
    )


def test_dropout_seeded_eval_and_edges(rng):
    x = Tensor(rng.normal(size=(8, 8)))
    a = Dropout(0.5, rng=np.random.default_rng(3))(x).data
    b = Dropout(0.5, rng=np.random.default_rng(3))(x).data
    np.testing.assert_array_equal(a, b)  # same seed -> same mask
    layer = Dropout(0.5, rng=rng)
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x.data)  # eval: identity
    np.testing.assert_array_equal(Dropout(1.0, rng=rng)(x).data, np.zeros((8, 8)))
    np.testing.assert_array_equal(Dropout(0.0, rng=rng)(x).data, x.data)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        Dropout(1.5, rng=rng)
