"""The optimiser recipe of GPT training (nanoGPT, GPT-2/3): AdamW, decay on matrices only, and
a learning rate that warms up linearly then follows a cosine down to a floor.

**Decoupled weight decay on matrices.** AdamW's step is
``θ ← θ − η (m̂/(√v̂ + ε) + λ θ)``: the decay ``λθ`` is applied beside the adaptive step, not
through the gradient (Loshchilov & Hutter, 2019). It is applied to the weight matrices (linear
layers, embeddings: ``dim ≥ 2``) and not to gains and biases (``dim < 2``), which set scales and
offsets rather than carry features: decaying a norm's gain toward 0 only fights the norm. This is
:func:`layer4_architectures.sequence.gpt.decay_groups` (one rule), here on the parameter list
the training pipeline hands an optimizer.

**Warm-up, cosine, floor.** For ``w = max(1, ⌊f_w·T⌋)`` warm-up steps and a floor ``η_min =
f_min·η``::

    η_t = η · (t + 1)/w                                        t < w
    η_t = η_min + (η − η_min) · (1 + cos(π (t − w)/(T − w)))/2   w ≤ t ≤ T

Adam's second-moment estimate is poor in the first steps, so a full-size step then can throw the
weights far; the warm-up waits for it. The floor (nanoGPT: ``min_lr = lr/10``) keeps the last
steps learning.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from layer4_architectures.sequence.gpt import decay_groups


def adamw(
    params: Iterable[torch.nn.Parameter],
    lr: float = 1e-3,
    betas: Sequence[float] = (0.9, 0.95),
    weight_decay: float = 0.1,
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW with ``weight_decay`` on the parameters of dim ≥ 2 and none on the others."""
    params = list(params)
    if not params:
        raise ValueError("adamw got no parameters to optimise")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    groups = decay_groups(params, weight_decay)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas), eps=eps)


def warmup_cosine_floor(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_fraction: float = 0.1,
) -> LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine down to
    ``min_lr_fraction`` of the peak rate at ``total_steps`` (and held there after)."""
    if total_steps < 2:
        raise ValueError(f"total_steps must be >= 2, got {total_steps}")
    if not 0 < warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in (0, 1), got {warmup_fraction}")
    if not 0 <= min_lr_fraction <= 1:
        raise ValueError(f"min_lr_fraction must be in [0, 1], got {min_lr_fraction}")
    warm = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return min_lr_fraction + (1 - min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
