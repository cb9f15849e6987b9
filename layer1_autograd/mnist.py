"""MNIST as the MLPs of this layer read it: flat 784-vectors, standardised, with a validation split.

A multilayer perceptron sees an image as a vector, x ∈ ℝ⁷⁸⁴ (pixels / 255, row by row). One
mean μ and one standard deviation σ over every pixel of the TRAINING images give the inputs
(x − μ) / σ; the validation and test images are shifted and scaled with the same μ and σ, never
their own, so that no statistic of held-out data leaks into training. The validation split is a
random subset of the official training set; the official test set is kept for the final figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layer0_math.datasets import load_mnist

__all__ = ["FlatMNIST", "flat_mnist"]


@dataclass
class FlatMNIST:
    """Standardised (N, 784) float32 inputs and their labels, plus the μ and σ used."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: float
    std: float


def flat_mnist(
    rng: np.random.Generator, *, n_val: int, n_train: int = 0, n_test: int = 0
) -> FlatMNIST:
    """MNIST with ``n_val`` random training images held out for validation.

    ``n_train``/``n_test`` = 0 keep every remaining training image / every test image; otherwise
    the first ``n_train`` of the (shuffled) remainder and the first ``n_test`` test images.
    """
    x, y = load_mnist("train")
    x_test, y_test = load_mnist("test")
    if not 0 < n_val < len(x) or n_train < 0 or n_test < 0:
        raise ValueError(
            f"flat_mnist needs 0 < n_val < {len(x)} and n_train, n_test >= 0, "
            f"got n_val={n_val}, n_train={n_train}, n_test={n_test}"
        )
    perm = rng.permutation(len(x))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if n_train:
        train_idx = train_idx[:n_train]
    if n_test:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    x_train = x[train_idx].reshape(len(train_idx), -1).astype(np.float32) / 255.0  # (N, 784)
    mean, std = float(x_train.mean()), float(x_train.std())

    def prep(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1).astype(np.float32) / 255.0 - mean) / std

    return FlatMNIST(
        x_train=(x_train - mean) / std,
        y_train=y[train_idx],
        x_val=prep(x[val_idx]),
        y_val=y[val_idx],
        x_test=prep(x_test),
        y_test=y_test,
        mean=mean,
        std=std,
    )
