"""The reversal task: what an attention layer must learn to output its input backwards.

Input: random token ids s_0 … s_{T−1}; target: s_{T−1} … s_0. With token plus position
embeddings, output position i can only find its token by attending to key position T − 1 − i,
so a trained :class:`~layer2_primitives.models.ReversalAttention` should put its weight on the
anti-diagonal of the T × T attention matrix A. The measure of that:

    anti-diagonal mass = (1/T) ∑_i A[i, T−1−i]         1 for the perfect pattern, 1/T uniform
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from layer1_autograd import SGD, F, Tensor, no_grad
from layer1_autograd.training import History, fit, one_cycle
from layer2_primitives.models import ReversalAttention

__all__ = ["ReversalResult", "attention_diagonal_mass", "train_reversal"]


def attention_diagonal_mass(weights: np.ndarray) -> float:
    """Mean attention weight on the anti-diagonal (query i -> key T-1-i). weights (B, h, T, T)."""
    if weights.ndim < 2 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"attention weights must end in a square (T, T), got {weights.shape}")
    t = weights.shape[-1]
    return float(weights[..., np.arange(t), t - 1 - np.arange(t)].sum(axis=-1).mean() / t)


@dataclass
class ReversalResult:
    """A trained reversal model's history and its attention on fresh test sequences."""

    history: History
    weights: np.ndarray  # (B, h, T, T) attention of the test sequences
    ids: np.ndarray  # (B, T) the test sequences
    accuracy: float  # fraction of test positions reversed correctly


def train_reversal(
    model: ReversalAttention,
    rng: np.random.Generator,
    *,
    vocab: int,
    steps: int,
    batch: int,
    lr: float,
    momentum: float = 0.9,
    test_batch: int = 512,
    progress: Callable[..., Any] | None = None,
) -> ReversalResult:
    """Train on fresh random sequences every step (one-cycle rate, 5 % warmup), then test."""
    seq_len = model.seq_len

    def loss_fn(step: int) -> Tensor:
        ids = rng.integers(0, vocab, size=(batch, seq_len))
        logits = model(ids)
        return F.cross_entropy(logits.reshape(-1, vocab), ids[:, ::-1].reshape(-1))

    history = fit(
        loss_fn,
        SGD(model.parameters(), lr=lr, momentum=momentum),
        steps,
        schedule=one_cycle(lr, steps, warmup=0.05),
        progress=progress,
        name="reversal attention",
    )
    ids = rng.integers(0, vocab, size=(test_batch, seq_len))
    with no_grad():
        logits, weights = model(ids, need_weights=True)
    accuracy = float((logits.data.argmax(axis=-1) == ids[:, ::-1]).mean())
    return ReversalResult(history, weights, ids, accuracy)
