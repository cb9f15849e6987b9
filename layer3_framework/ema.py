"""Exponential moving average of weights: a smoother model for evaluation and sampling.

After every optimizer step, for every floating-point parameter and buffer θ of the module,

    θ_ema ← d_t · θ_ema + (1 − d_t) · θ,      d_t = min(decay, (1 + t) / (10 + t)) with warm-up,

where ``t`` is the number of updates so far. The warm-up keeps the first averages from being
dominated by the random initial weights (``d_0 = 0.1``, rising towards ``decay``); without it
``d_t = decay``. Integer buffers (BatchNorm's ``num_batches_tracked``) are copied.

:class:`EMA` is a trainer *hook* (called with the trainer after each step); its state is
checkpointed with the run, and with ``use_for_eval=True`` the trainer evaluates with the averaged
weights (swapped in by :meth:`EMA.swapped` and back out afterwards). ``load_model(path,
weights="ema")`` rebuilds a model with the averaged weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class EMA:
    """The moving average of ``module``'s state (see the module docstring)."""

    name = "ema"

    def __init__(
        self,
        module: nn.Module,
        decay: float = 0.999,
        *,
        warmup: bool = False,
        use_for_eval: bool = False,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.module, self.decay, self.warmup = module, decay, warmup
        self.use_for_eval = use_for_eval
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def current_decay(self) -> float:
        """``d_t`` of the next update."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """One averaging step towards the module's current weights."""
        d = self.current_decay()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.detach(), 1.0 - d)  # d·s + (1−d)·v
            else:
                self.shadow[k].copy_(v)
        self.updates += 1

    def __call__(self, trainer: Any) -> None:
        self.update()

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The module holds the averaged weights inside the block, its own ones after."""
        own = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.shadow)
        try:
            yield
        finally:
            self.module.load_state_dict(own)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the module: keys {sorted(missing)}")
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
        self.updates = int(state["updates"])
