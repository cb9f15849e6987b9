"""Lion, EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

Found by program search; the update is the sign of an interpolation between the momentum and
the current gradient, so every coordinate moves by exactly ±η (Algorithm 2 of the paper)::

    c_t = β₁ m_{t−1} + (1 − β₁) g_t
    θ_t = θ_{t−1} − η (sign(c_t) + λ θ_{t−1})         (decoupled weight decay, as AdamW)
    m_t = β₂ m_{t−1} + (1 − β₂) g_t                  (β₂ > β₁: a longer memory for the state)

sign(0) = 0. Defaults β = (0.9, 0.99), as the paper.

When it helps: one buffer per parameter (half of AdamW's state) and a cheap update; matched or
beat AdamW on ViT, diffusion and language models in the paper. Because the sign makes the step
norm √n · η regardless of the gradient's size, its rate must be 3–10× smaller than AdamW's and
its weight decay 3–10× larger to keep η λ the same; it benefits from large batches, where the
sign of the momentum is reliable.
"""

from __future__ import annotations

from typing import Any

import torch

from layer5_training.optim.base import (
    PerParameterOptimizer,
    check_betas,
    check_lr,
    check_nonnegative,
)


class Lion(PerParameterOptimizer):
    """Lion: ``θ ← θ − η(sign(β₁m + (1−β₁)g) + λθ)``, then ``m ← β₂m + (1−β₂)g``."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        check_lr(lr)
        check_betas(betas)
        check_nonnegative("weight_decay", weight_decay)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"exp_avg": torch.zeros_like(param)}  # m

    def update(
        self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, (beta1, beta2) = group["lr"], group["betas"]
        m = state["exp_avg"]
        direction = m.lerp(grad, 1 - beta1).sign_()  # sign(c_t), c_t = β₁m_{t−1} + (1−β₁)g
        param.mul_(1 - lr * group["weight_decay"]).add_(direction, alpha=-lr)
        m.mul_(beta2).add_(grad, alpha=1 - beta2)
