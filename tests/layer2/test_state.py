"""state_arrays / load_state_arrays: parameters plus buffers, named exactly like torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import Tensor
from layer2_primitives import BatchNorm2d, CifarCNN, load_state_arrays, state_arrays


def test_round_trip_restores_parameters_and_running_stats(rng):
    a = CifarCNN((4, 8), image_size=8, rng=rng, dtype=np.float64)
    a(Tensor(rng.normal(size=(5, 3, 8, 8))))  # one training step moves the running statistics
    state = state_arrays(a)
    state["features.1.num_batches_tracked"] = state["features.1.num_batches_tracked"].reshape(1)
    b = CifarCNN((4, 8), image_size=8, rng=np.random.default_rng(99), dtype=np.float64)
    load_state_arrays(b, state)
    a.eval()
    b.eval()
    x = Tensor(rng.normal(size=(2, 3, 8, 8)))
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert b.features[1].num_batches_tracked == 1


def test_batch_norm_state_keys_match_torch():
    ours = state_arrays(BatchNorm2d(3))
    theirs = torch.nn.BatchNorm2d(3).state_dict()
    assert sorted(ours) == sorted(theirs)
    for k in theirs:
        assert ours[k].shape == tuple(theirs[k].shape), k


def test_load_state_errors(rng):
    model = CifarCNN((4,), image_size=2, rng=rng)
    state = state_arrays(model)
    del state["features.1.running_var"]
    with pytest.raises(KeyError, match="features.1.running_var"):
        load_state_arrays(model, state)
    state = state_arrays(model)
    state["features.1.running_mean"] = np.zeros(5, np.float32)
    with pytest.raises(
        ValueError, match=r"'features.1.running_mean' has shape \(5,\), buffer \(4,\)"
    ):
        load_state_arrays(model, state)
