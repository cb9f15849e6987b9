"""Embedding against torch: lookup and the scatter-add gradient with repeated ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import Tensor
from layer2_primitives import Embedding
from tests.layer2.torch_compare import assert_close, copy_params


def test_embedding_matches_torch(rng):
    ours, theirs = Embedding(7, 5, rng=rng, dtype=np.float64), torch.nn.Embedding(7, 5).double()
    copy_params(ours, theirs)
    ids = rng.integers(0, 7, size=(4, 9))  # many repeats: gradients must add up
    y, ty = ours(ids), theirs(torch.tensor(ids))
    g = rng.normal(size=y.shape)
    y.backward(g)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, "embedding output")
    assert_close(ours.weight.grad, theirs.weight.grad, "embedding grad")


def test_embedding_init_and_errors(rng):
    emb = Embedding(1000, 20, rng=rng)
    assert emb.weight.dtype == np.float32
    assert abs(emb.weight.data.std() - 1) < 0.05  # torch's N(0, 1) init
    with pytest.raises(ValueError, match=r"ids must be in \[0, 1000\), got values in \[-1, 3\]"):
        emb(np.array([[-1, 3]]))
    with pytest.raises(TypeError, match="integer array"):
        emb(np.array([0.5]))
    with pytest.raises(TypeError, match="integer array"):
        emb(Tensor(np.array([1.0])))
