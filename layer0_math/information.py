"""Information theory: entropy, KL divergence, and the cross-entropy loss of every classifier.

**Entropy** ``H(p) = -sum_i p_i log p_i`` is the average surprise ``-log p_i`` of an outcome
drawn from p: the fewest nats (natural log) or bits (log 2) per symbol a code can use. It is 0
for a certain outcome and ``log K`` for the uniform distribution on K outcomes; ``0 log 0 = 0``.

**Cross-entropy** ``H(p, q) = -sum_i p_i log q_i`` is the average surprise when outcomes come
from p but are coded (predicted) with q. The excess over the best possible code is the
**Kullback-Leibler divergence**

    KL(p || q) = sum_i p_i log(p_i / q_i) = H(p, q) - H(p) >= 0,

zero only when q = p (Gibbs' inequality), infinite when q gives zero probability to something p
can produce, and not symmetric. Training a classifier by minimising the cross-entropy to the
data's labels is therefore minimising a KL divergence: H(p) does not depend on the model.

**Cross-entropy from logits.** A classifier outputs logits z; its prediction is
``q = softmax(z)``. With a one-hot target y the loss is

    -log q_y = -z_y + logsumexp(z) = -log_softmax(z)_y,

computed from the stable log-softmax so that a confident wrong prediction gives a large finite
loss instead of ``-log(0) = inf``. This is what ``torch.nn.functional.cross_entropy`` computes.
"""

from __future__ import annotations

import math

import numpy as np

from layer0_math.numerics import log_softmax

REDUCTIONS = ("mean", "sum", "none")


def _check_distribution(p: np.ndarray, name: str, axis: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0 or p.shape[axis] == 0:
        raise ValueError(f"{name} must have at least one outcome along axis {axis}, got {p.shape}")
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite and non-negative, got min {p.min()!r}")
    sums = p.sum(axis=axis)
    if not np.allclose(sums, 1.0, atol=1e-6):
        raise ValueError(f"{name} must sum to 1 along axis {axis}, got sums {sums!r}")
    return p


def _log_base(base: float | None) -> float:
    if base is None:
        return 1.0
    if not (base > 0 and base != 1):
        raise ValueError(f"base must be positive and not 1, got {base}")
    return math.log(base)


def entropy(p: np.ndarray, axis: int = -1, base: float | None = None) -> np.ndarray:
    """``H(p) = -sum p log p`` along ``axis`` (nats by default, bits with ``base=2``)."""
    p = _check_distribution(p, "p", axis)
    log_p = np.log(np.where(p > 0, p, 1.0))  # 0 log 0 = 0
    return -np.sum(p * log_p, axis=axis) / _log_base(base)


def cross_entropy(
    p: np.ndarray, q: np.ndarray, axis: int = -1, base: float | None = None
) -> np.ndarray:
    """``H(p, q) = -sum p log q`` along ``axis``; inf where q = 0 < p."""
    p = _check_distribution(p, "p", axis)
    q = _check_distribution(q, "q", axis)
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf; 0 * -inf is masked
        terms = np.where(p > 0, p * np.log(q), 0.0)
    return -np.sum(terms, axis=axis) / _log_base(base)


def kl_divergence(
    p: np.ndarray, q: np.ndarray, axis: int = -1, base: float | None = None
) -> np.ndarray:
    """``KL(p || q) = sum p log(p / q)`` along ``axis``; inf where q = 0 < p."""
    p = _check_distribution(p, "p", axis)
    q = _check_distribution(q, "q", axis)
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf; 0 * inf is masked
        log_ratio = np.log(np.where(p > 0, p, 1.0)) - np.log(q)
        terms = np.where(p > 0, p * log_ratio, 0.0)
    return np.sum(terms, axis=axis) / _log_base(base)


def cross_entropy_from_logits(
    logits: np.ndarray, targets: np.ndarray, reduction: str = "mean"
) -> np.ndarray | float:
    """``-log_softmax(logits)[n, targets[n]]`` for logits (N, C) and integer targets (N,).

    ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"`` (the (N,) losses), as in
    ``torch.nn.functional.cross_entropy``.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {logits.shape}")
    if targets.shape != (logits.shape[0],) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(
            f"targets must be integers of shape ({logits.shape[0]},), "
            f"got {targets.dtype} {targets.shape}"
        )
    n_classes = logits.shape[1]
    if targets.size and (targets.min() < 0 or targets.max() >= n_classes):
        raise ValueError(
            f"targets must be in [0, {n_classes}), got range [{targets.min()}, {targets.max()}]"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    losses = -log_softmax(logits, axis=1)[np.arange(logits.shape[0]), targets]  # (N,)
    if reduction == "none":
        return losses
    return float(losses.mean() if reduction == "mean" else losses.sum())
