"""Stateless functions on tensors: fused losses and layers with hand-written backward passes.

A composition of primitive ops is always correct, but a *fused* op that knows its own
derivative is faster and numerically safer. Two matter for every classifier:

Linear: ``y = x Wᵀ + b`` with x (N, in), W (out, in), b (out,). With δ = ∂L/∂y (N, out):

    ∂L/∂x = δ W      (N, in)        ∂L/∂W = δᵀ x      (out, in)        ∂L/∂b = ∑_n δ_n   (out,)

Cross-entropy of logits z (N, C) against integer targets t (N,):

    L = (1/N) ∑_n [ logsumexp(z_n) − z_{n,t_n} ]          ∂L/∂z = (softmax(z) − onehot(t)) / N

logsumexp is computed as m + log ∑ exp(z − m) with m = max z, so no exponent overflows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layer1_autograd.tensor import Tensor, concatenate, stack, unbroadcast

__all__ = [
    "linear",
    "cross_entropy",
    "mse_loss",
    "identity",
    "relu",
    "tanh",
    "sigmoid",
    "gelu",
    "softmax",
    "log_softmax",
    "concatenate",
    "stack",
]


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for x (..., in), weight (out, in), bias (out,), as one graph node."""
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        dtypes = [str(t.dtype) for t in (x, weight, bias) if t is not None]
        raise TypeError(f"linear: input, weight and bias must share a dtype, got {dtypes}")
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            f"(expected input (..., {weight.shape[1] if weight.ndim == 2 else '?'}))"
        )
    if bias is not None and bias.shape not in ((weight.shape[0],), (1,), ()):
        raise ValueError(
            f"linear: bias of shape {bias.shape} does not broadcast to the output features "
            f"({weight.shape[0]},); expected ({weight.shape[0]},), (1,) or ()"
        )
    w = weight.data
    out = x.data @ w.T  # (..., out)
    if bias is not None:
        out += bias.data
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray) -> list[np.ndarray | None]:
        g2 = g.reshape(-1, g.shape[-1])  # (M, out), M = prod of leading dims
        grads: list[np.ndarray | None] = [
            g @ w if x.requires_grad else None,  # (..., in)
            g2.T @ x.data.reshape(-1, w.shape[1]) if weight.requires_grad else None,  # (out, in)
        ]
        if bias is not None:
            # A (1,) or () bias was broadcast over the features too: sum those copies as well.
            grads.append(unbroadcast(g2.sum(axis=0), bias.shape) if bias.requires_grad else None)
        return grads

    return Tensor.from_op(out, parents, backward, "linear")


def _targets_array(targets: Any, n: int, c: int) -> np.ndarray:
    t = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if t.dtype.kind == "f":
        if not np.all(t == np.round(t)):
            raise TypeError("cross_entropy: targets must be integer class indices")
        t = t.astype(np.int64)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, got {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"cross_entropy: targets must have shape ({n},), got {t.shape}")
    if n and (t.min() < 0 or t.max() >= c):
        raise ValueError(
            f"cross_entropy: targets must lie in [0, {c}), got values in [{t.min()}, {t.max()}]"
        )
    return t


def cross_entropy(logits: Tensor, targets: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of ``logits`` (N, C) against integer ``targets`` (N,), fused."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be mean, sum or none, got {reduction!r}")
    n, c = logits.shape
    t = _targets_array(targets, n, c)
    z = logits.data
    shifted = z - z.max(axis=1, keepdims=True)  # (N, C)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)  # (N, 1)
    rows = np.arange(n)
    losses = np.log(s[:, 0]) - shifted[rows, t]  # (N,)
    if reduction == "none":
        out = losses
    else:
        out = np.asarray(losses.sum() if reduction == "sum" else losses.mean(), dtype=z.dtype)

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        grad = e / s  # softmax (N, C); a fresh array we may modify
        grad[rows, t] -= 1
        if reduction == "none":
            grad *= g[:, None]
        else:
            grad *= g / n if reduction == "mean" else g
        return (grad,)

    return Tensor.from_op(out, (logits,), backward, "cross_entropy")


def mse_loss(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or summed) squared error; ``target`` is a constant."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"mse_loss: reduction must be mean or sum, got {reduction!r}")
    tgt = target.data if isinstance(target, Tensor) else np.asarray(target, dtype=pred.dtype)
    if tgt.shape != pred.shape:
        raise ValueError(f"mse_loss: prediction {pred.shape} and target {tgt.shape} differ")
    sq = (pred - Tensor(tgt.astype(pred.dtype, copy=False))) ** 2
    return sq.mean() if reduction == "mean" else sq.sum()


def identity(x: Tensor) -> Tensor:
    return x


def relu(x: Tensor) -> Tensor:
    return x.relu()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    return x.gelu(approximate)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.softmax(axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.log_softmax(axis)
