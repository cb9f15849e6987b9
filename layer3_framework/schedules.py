"""Learning-rate schedules the ``optim`` configs name that torch does not have as one class.

Warm-up then cosine: for ``w = max(1, ⌊f·T⌋)`` warm-up steps the rate rises linearly from
``lr/w`` to ``lr``, then ``lr_t = lr · (1 + cos(π (t - w) / (T - w))) / 2`` over the remaining
steps (torch's LinearLR then CosineAnnealingLR, chained by SequentialLR). One-cycle is torch's
own ``OneCycleLR`` and is named by its config directly.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.1
) -> SequentialLR:
    """Linear warm-up over ``warmup_fraction`` of ``total_steps``, then cosine annealing."""
    if total_steps < 2:
        raise ValueError(f"total_steps must be >= 2, got {total_steps}")
    if not 0 < warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in (0, 1), got {warmup_fraction}")
    warm = max(1, int(warmup_fraction * total_steps))
    return SequentialLR(
        optimizer,
        [
            LinearLR(optimizer, start_factor=1.0 / warm, total_iters=warm),
            CosineAnnealingLR(optimizer, T_max=total_steps - warm),
        ],
        milestones=[warm],
    )
