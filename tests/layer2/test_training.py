"""Training helpers: per-channel normalisation vs numpy/torchvision's formula, augmentation,
batched prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import Linear, Tensor
from layer2_primitives.training import (
    channel_stats,
    normalize_channels,
    predict_batched,
    random_crop_flip,
)


def test_random_crop_flip_takes_crops_of_the_padded_image(rng):
    x = rng.normal(size=(16, 3, 6, 5)).astype(np.float32)
    out = random_crop_flip(x, np.random.default_rng(0), pad=2)
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(len(x)):  # brute force: every output is some crop, maybe mirrored
        crops = [
            padded[i, :, dy : dy + 6, dx : dx + 5][..., ::flip]
            for dy in range(5)
            for dx in range(5)
            for flip in (1, -1)
        ]
        assert any(np.array_equal(out[i], c) for c in crops), f"image {i} is not a crop"


def test_channel_normalisation_uses_the_given_statistics(rng):
    x = rng.integers(0, 256, size=(20, 3, 4, 5)).astype(np.uint8)
    mean, std = channel_stats(x)
    ref = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(mean, ref.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=1), rtol=1e-6)
    out = normalize_channels(x, mean, std)
    assert out.dtype == np.float32
    # torchvision's Normalize: (x - mean[c]) / std[c], per channel
    t = (torch.tensor(x, dtype=torch.float32) - torch.tensor(mean)[:, None, None]) / torch.tensor(
        std
    )[:, None, None]
    np.testing.assert_allclose(out, t.numpy(), rtol=1e-6)
    other = normalize_channels(x[:5], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])  # e.g. a sidecar's lists
    np.testing.assert_allclose(other[:, 1], (x[:5, 1] - 2.0) / 2.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        channel_stats(x[0])


def test_predict_batched_equals_one_big_batch(rng):
    layer = Linear(6, 4, rng=rng, dtype=np.float64)
    x = rng.normal(size=(23, 6))
    np.testing.assert_allclose(predict_batched(layer, x, 5), layer(Tensor(x)).data, rtol=1e-12)
