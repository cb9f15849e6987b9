"""Training helpers: gradient clipping vs torch, schedule, augmentation, confusion matrix."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix as sk_confusion

from layer1_autograd import Tensor
from layer2_primitives.training import (
    clip_grad_norm,
    confusion_matrix,
    one_cycle_lr,
    random_crop_flip,
)


def test_clip_grad_norm_matches_torch(rng):
    grads = [rng.normal(size=(3, 4)) * 5, rng.normal(size=7)]
    ours = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for o, t, g in zip(ours, theirs, grads, strict=True):
        o.grad = g.copy()
        t.grad = torch.tensor(g)
    norm = clip_grad_norm(ours, 2.0)
    ref = torch.nn.utils.clip_grad_norm_(theirs, 2.0)
    assert abs(norm - float(ref)) < 1e-9
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-9)


def test_one_cycle_lr_shape():
    lrs = [one_cycle_lr(s, 100, 1.0, warmup=0.1) for s in range(100)]
    assert lrs[9] == 1.0 and max(lrs) == 1.0
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10], strict=False))  # rising
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # falling
    assert lrs[-1] < 0.02


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


def test_confusion_matrix_matches_sklearn(rng):
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    np.testing.assert_array_equal(confusion_matrix(y, p, 4), sk_confusion(y, p, labels=range(4)))
