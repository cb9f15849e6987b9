"""The grokking task: modular addition, every pair (a, b) of residues, split once at random.

Power et al. 2022, "Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets"
(arXiv 2201.02177); the input layout is Nanda et al. 2023's (arXiv 2301.05217).

For a prime p the table of the binary operation has p² entries::

    x = [a, b, "="]          three tokens; a, b ∈ {0, …, p−1}, "=" is token p      (p², 3)
    y = (a + b) mod p        the answer, read at the "=" position                   (p²,)

A fraction φ of the p² pairs is the training set (the whole of it is one batch: full-batch
training); the other 1 − φ are the test set. The split is a seeded permutation of the pair
indices i = a·p + b, so every pair is in exactly one side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """The train and test sides of the table: inputs (n, 3) int64, answers (n,) int64."""

    p: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def train_fraction(self) -> float:
        return len(self.train_y) / self.p**2


def check_prime(p: int) -> int:
    """``p`` if it is a prime ≥ 3 (the Fourier reading needs a field: every k ≠ 0 invertible)."""
    if isinstance(p, bool) or not isinstance(p, int) or p < 3:
        raise ValueError(f"p must be a prime >= 3, got {p!r}")
    if any(p % d == 0 for d in range(2, int(p**0.5) + 1)):
        raise ValueError(f"p={p} is not prime; expected a prime modulus such as 97 or 113")
    return p


def all_pairs(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every input [a, b, "="] (p², 3) and its answer (a + b) mod p (p²,), row i = a·p + b."""
    check_prime(p)
    a = torch.arange(p).repeat_interleave(p)  # (p²,) 0 0 … 1 1 …
    b = torch.arange(p).repeat(p)  # (p²,) 0 1 … 0 1 …
    equals = torch.full_like(a, p)  # the "=" token
    return torch.stack([a, b, equals], dim=1), (a + b) % p


def split_pairs(p: int, train_fraction: float, seed: int) -> Split:
    """A seeded random split of the p² pairs: ⌊φ·p²⌋ for training, the rest for testing."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    x, y = all_pairs(p)
    n_train = int(train_fraction * p * p)
    if n_train < 1 or n_train == p * p:
        raise ValueError(f"train_fraction={train_fraction} leaves an empty side for p={p}")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(p * p))
    train, test = order[:n_train], order[n_train:]
    return Split(p, x[train], y[train], x[test], y[test])
