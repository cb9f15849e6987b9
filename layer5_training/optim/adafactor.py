"""Adafactor (Shazeer & Stern 2018): Adam-like steps with a factored second moment.

For a matrix parameter ``θ ∈ R^{R×C}`` (the last two dimensions of a ≥ 2-D tensor) Adafactor
keeps only the row and column means of the squared gradient, ``r ∈ R^{R×1}``, ``c ∈ R^{1×C}``,
and rebuilds the full second moment as their rank-1 product (the best rank-1 fit under the
I-divergence, paper §3); a vector keeps its full v. In step t (counted from 1)::

    β̂₂ₜ = 1 − t^{d₂}                                     (beta2_decay d₂ = −0.8: β̂₂₁ = 0)
    ρ_t = min(η, 1/√t)                                   (relative step size)
    α_t = max(ε₂, RMS(θ_{t−1})) · ρ_t                     (the step is relative to the weight scale)
    r_t = β̂₂ₜ r_{t−1} + (1 − β̂₂ₜ) mean_C(g²)             (R, 1)
    c_t = β̂₂ₜ c_{t−1} + (1 − β̂₂ₜ) mean_R(g²)             (1, C)
    V̂_t = r_t c_t / max(mean_R(r_t), ε₁)                   (R, C), rank 1
    U_t = g / √max(V̂_t, ε₁²)
    θ_t = θ_{t−1}(1 − ηλ) − α_t U_t / max(1, RMS(U_t)/d)  (update clipping at threshold d)

with ``RMS(x) = ‖x‖₂/√n`` and ε₁ = the dtype's machine epsilon unless given.

Variant: this is torch.optim.Adafactor's version (torch ≥ 2.5), followed exactly so the two can
be compared step for step. It differs from the paper's Algorithm 4 in that there is no first
moment (the paper's default β₁ = 0 too), ε₁ is applied to the variance estimate rather than
added to g², the relative step ρ_t is capped by the user's ``lr`` (the paper uses
``min(10⁻², 1/√t)``), and weight decay is decoupled as in AdamW (the paper has none).

When it helps: memory. For an R×C weight the second-moment state is R + C numbers instead of
R·C, which is why T5 and PaLM were trained with it; the relative step makes it nearly
learning-rate free. Without momentum it is noisier than Adam, and update clipping is what keeps
it stable when β̂₂ is still small.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from layer5_training.optim.base import PerParameterOptimizer, check_lr, check_nonnegative


def _check(beta2_decay: float, eps: tuple[float | None, float], d: float) -> None:
    if not beta2_decay <= 0:
        raise ValueError(f"beta2_decay must be <= 0, got {beta2_decay}")
    if eps[0] is not None and not eps[0] >= 0:
        raise ValueError(f"eps[0] (eps1) must be >= 0 or None, got {eps[0]}")
    if not eps[1] >= 0:
        raise ValueError(f"eps[1] (eps2) must be >= 0, got {eps[1]}")
    if not d >= 1:
        raise ValueError(f"d (the update-clipping threshold) must be >= 1, got {d}")


def _rms(x: torch.Tensor) -> float:
    return x.norm(2).item() / math.sqrt(x.numel())


class Adafactor(PerParameterOptimizer):
    """Adafactor, factored second moments for ≥ 2-D parameters (torch.optim.Adafactor's rule)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
    ) -> None:
        check_lr(lr)
        _check(beta2_decay, eps, d)
        check_nonnegative("weight_decay", weight_decay)
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": tuple(eps),
            "d": d,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        if param.dim() < 2:
            return {"step": 0, "variance": torch.zeros_like(param)}
        row = param.new_zeros((*param.shape[:-1], 1))  # (..., R, 1)
        col = param.new_zeros((*param.shape[:-2], 1, param.shape[-1]))  # (..., 1, C)
        return {"step": 0, "row_var": row, "col_var": col}

    def update(
        self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr = group["lr"]
        eps1 = group["eps"][0]
        eps1 = torch.finfo(param.dtype).eps if eps1 is None else eps1
        state["step"] += 1
        t = state["step"]
        new_weight = t ** group["beta2_decay"]  # 1 − β̂₂ₜ
        alpha = max(group["eps"][1], _rms(param)) * min(lr, 1 / math.sqrt(t))
        if group["weight_decay"] != 0:
            param.mul_(1 - lr * group["weight_decay"])
        if param.dim() < 2:
            state["variance"].lerp_(grad * grad, new_weight)
            v_hat = state["variance"].clone()
        else:
            row, col = state["row_var"], state["col_var"]
            v_hat = _factored_second_moment(grad, row, col, new_weight, eps1)
        u = v_hat.clamp_(min=eps1 * eps1).rsqrt_().mul_(grad)  # g / √V̂
        clip = max(1.0, _rms(u) / group["d"])
        param.add_(u, alpha=-alpha / clip)


def _factored_second_moment(
    grad: torch.Tensor, row: torch.Tensor, col: torch.Tensor, weight: float, eps1: float
) -> torch.Tensor:
    """Advance the row / column means of g² in place and return their rank-1 estimate V̂."""
    square = grad * grad  # (..., R, C)
    row.lerp_(square.mean(dim=-1, keepdim=True), weight)  # (..., R, 1)
    col.lerp_(square.mean(dim=-2, keepdim=True), weight)  # (..., 1, C)
    return (row @ col).div_(row.mean(dim=-2, keepdim=True).clamp(min=eps1))  # (..., R, C)
