"""Adagrad (Duchi, Hazan & Singer 2011): per-coordinate rates from the sum of squared gradients.

::

    g ← g_t + λ θ_t
    η_t = η / (1 + (t − 1) δ)                  (lr_decay δ; 0 keeps η fixed)
    G_t = G_{t−1} + g²,   G_0 = initial_accumulator_value
    θ_{t+1} = θ_t − η_t g / (√G_t + ε)

Coordinates that have seen large or frequent gradients get small steps, rare ones keep large
steps; since G only grows, every coordinate's rate decays roughly like 1/√t.

When it helps: sparse features (linear models over bag-of-words, click-through features,
embeddings of rare tokens), where rare coordinates deserve bigger steps, and convex problems,
where its regret bound holds. On deep nets the ever-shrinking rate usually stops learning too
early; RMSprop and Adam replace the sum by a moving average for that reason.
"""

from __future__ import annotations

from typing import Any

import torch

from layer5_training.optim.base import (
    PerParameterOptimizer,
    check_lr,
    check_nonnegative,
    check_positive,
)


class Adagrad(PerParameterOptimizer):
    """Adagrad with optional rate decay ``lr_decay`` and a non-zero starting accumulator."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        check_lr(lr)
        check_nonnegative("lr_decay", lr_decay)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("initial_accumulator_value", initial_accumulator_value)
        check_positive("eps", eps)
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
        }
        super().__init__(params, defaults)

    def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        start = group["initial_accumulator_value"]
        return {"step": 0, "sum": torch.full_like(param, start)}  # G

    def update(
        self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        rate = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"].addcmul_(grad, grad, value=1)
        param.addcdiv_(grad, state["sum"].sqrt().add_(group["eps"]), value=-rate)
