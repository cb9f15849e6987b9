"""What training a layer-2 image model needs besides the model and the loop: input
normalisation, augmentation and batched prediction. (The loop, its schedules and gradient
clipping are layer 1's: :mod:`layer1_autograd.training`.)

Per-channel normalisation with the TRAINING set's statistics, applied to every split:

    x̂[n, c] = (x[n, c] − μ_c) / σ_c        μ_c, σ_c over all training images and pixels of c

Augmentation (numpy, seeded): pad each image by 4 px (zeros), take a random 32x32 crop, flip it
horizontally with probability 1/2: the standard CIFAR-10 recipe; the crop is done for the whole
batch at once with fancy indexing, no Python loop over images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from layer0_math.datasets import load_cifar10
from layer1_autograd import Tensor, no_grad

__all__ = [
    "NormalizedImages",
    "channel_stats",
    "normalize_channels",
    "cifar10_normalized",
    "random_crop_flip",
    "predict_batched",
]


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of images (N, C, H, W), as float32 (C,)."""
    if x.ndim != 4:
        raise ValueError(f"channel_stats expects images (N, C, H, W), got shape {x.shape}")
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    std = x.std(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    return mean, std


def normalize_channels(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x − μ_c) / σ_c per channel, as float32; x (N, C, H, W), mean and std (C,)."""
    mean = np.asarray(mean, np.float32)[:, None, None]
    std = np.asarray(std, np.float32)[:, None, None]
    return (x.astype(np.float32) - mean) / std


@dataclass
class NormalizedImages:
    """Train and test images normalised with the training statistics (kept to undo or reuse)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def cifar10_normalized() -> NormalizedImages:
    """CIFAR-10 as float32, every split normalised per channel with the TRAIN mean and std."""
    x_train, y_train = load_cifar10("train")
    x_test, y_test = load_cifar10("test")
    mean, std = channel_stats(x_train)
    return NormalizedImages(
        normalize_channels(x_train, mean, std),
        y_train,
        normalize_channels(x_test, mean, std),
        y_test,
        mean,
        std,
    )


def random_crop_flip(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random `pad`-px-padded crops and horizontal flips of a batch (N, C, H, W), same shape."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    rows = dy[:, None] + np.arange(h)  # (N, H)
    cols = dx[:, None] + np.arange(w)  # (N, W)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    batch = np.arange(n)[:, None, None, None]
    chans = np.arange(c)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def predict_batched(
    forward: Callable[[Tensor], Tensor], x: np.ndarray, batch_size: int
) -> np.ndarray:
    """Logits of `forward` over `x` in batches, without recording a graph. (N, ...) -> (N, K)."""
    outs = []
    with no_grad():
        for start in range(0, len(x), batch_size):
            outs.append(forward(Tensor(x[start : start + batch_size])).data)
    return np.concatenate(outs)
