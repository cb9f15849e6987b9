"""Small training utilities the deliverables share: gradient clipping, a learning-rate schedule,
CIFAR-style augmentation, batched evaluation and a confusion matrix.

Global-norm clipping (Pascanu et al., 2013), used for recurrent nets whose gradients can explode:

    n = sqrt(sum_p ||grad_p||^2);   if n > c:  grad_p <- grad_p * c / n

One-cycle-style schedule: lr rises linearly from 0 to `peak` over the first `warmup` fraction of
the steps, then falls linearly back to 0 (a short warmup lets a large rate start safely; the decay
lets the weights settle).

Augmentation (numpy, seeded): pad each image by 4 px (zeros), take a random 32x32 crop, flip it
horizontally with probability 1/2 — the standard CIFAR-10 recipe; the crop is done for the whole
batch at once with fancy indexing, no Python loop over images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from layer1_autograd import Tensor, no_grad


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most `max_norm`; return the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads)))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g *= g.dtype.type(scale)
    return norm


def one_cycle_lr(step: int, total: int, peak: float, warmup: float = 0.15) -> float:
    """Linear warmup to `peak` over `warmup * total` steps, then linear decay to 0 at `total`."""
    if total < 1 or not 0.0 <= warmup < 1.0:
        raise ValueError(
            f"one_cycle_lr needs total >= 1 and 0 <= warmup < 1, got {total}, {warmup}"
        )
    rise = max(1, int(warmup * total))
    if step < rise:
        return peak * (step + 1) / rise
    return peak * max(0.0, (total - step) / max(1, total - rise))


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


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = number of examples of true class i predicted as j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts
