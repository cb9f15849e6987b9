"""Adam (Kingma & Ba 2015), AMSGrad (Reddi et al. 2018), AdamW (Loshchilov & Hutter 2019).

First and second moment estimates of the gradient, bias-corrected, give a per-coordinate step::

    g ← g_t + λ θ_t                       (Adam: L2 decay enters the gradient and the moments)
    m_t = β₁ m_{t−1} + (1 − β₁) g
    v_t = β₂ v_{t−1} + (1 − β₂) g²
    v̂_t = max(v̂_{t−1}, v_t)  with AMSGrad, else v_t
    θ_{t+1} = θ_t − η/(1 − β₁ᵗ) · m_t / (√v̂_t / √(1 − β₂ᵗ) + ε)

AdamW decouples the decay from the gradient: ``θ ← θ (1 − η λ)`` before the Adam step, and g is
the raw gradient. With Adam's L2 the decay of a coordinate is divided by its √v, so weights with
large gradients are barely regularised; AdamW shrinks every weight by the same factor.

When it helps: the default for Transformers and most non-convolutional nets: the 1/√v scaling
makes the step size insensitive to the gradient's scale per coordinate, so one learning rate
works across layers and embeddings. AdamW is what is meant in practice (GPT, ViT recipes);
AMSGrad's non-increasing v̂ fixes Adam's non-convergence counter-example but rarely changes
results. Costs two buffers per parameter (2× SGD's state).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from layer5_training.optim.base import (
    PerParameterOptimizer,
    check_betas,
    check_lr,
    check_nonnegative,
    check_positive,
)


class Adam(PerParameterOptimizer):
    """Adam with L2 weight decay in the gradient; ``amsgrad`` keeps the running max of v."""

    decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        check_lr(lr)
        check_betas(betas)
        check_positive("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
        }
        super().__init__(params, defaults)

    def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": 0,
            "exp_avg": torch.zeros_like(param),  # m
            "exp_avg_sq": torch.zeros_like(param),  # v
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(param)  # v̂
        return state

    def update(
        self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
        state["step"] += 1
        t = state["step"]
        if wd != 0:
            if self.decoupled:
                param.mul_(1 - lr * wd)
            else:
                grad = grad.add(param, alpha=wd)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        # bias corrections: m/(1-β₁ᵗ) and √(v/(1-β₂ᵗ)) undo the zero initialisation
        denom = v.sqrt().div_(math.sqrt(1 - beta2**t)).add_(group["eps"])
        param.addcdiv_(m, denom, value=-lr / (1 - beta1**t))


class AdamW(Adam):
    """Adam with decoupled weight decay ``θ ← θ(1 − ηλ)`` (default λ = 0.01, as torch)."""

    decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
