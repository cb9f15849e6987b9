"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay.

With gradient ``g_t = ∂L/∂θ`` at ``θ_t``, weight decay λ, momentum μ, dampening τ and rate η::

    g ← g_t + λ θ_t                                   (L2 penalty λ/2 ‖θ‖² folded into g)
    b_1 = g,   b_t = μ b_{t-1} + (1 − τ) g            (velocity; the first step takes g as is)
    d = g + μ b_t  if Nesterov  else  b_t             (Nesterov looks one velocity step ahead)
    θ_{t+1} = θ_t − η d

This is torch.optim.SGD's formulation (Sutskever et al. 2013 for Nesterov, with the rate outside
the buffer, so changing η mid-run does not rescale the stored velocity).

When it helps: the plain, memory-light baseline (one buffer per parameter) and still the
strongest choice for convolutional nets on images when paired with a schedule (one-cycle or
cosine); momentum averages noisy mini-batch gradients and speeds progress along shallow,
consistent directions of ill-conditioned losses. Nesterov momentum damps the oscillation of
heavy-ball momentum. Needs more learning-rate tuning than Adam-family methods on Transformers.
"""

from __future__ import annotations

from typing import Any

import torch

from layer5_training.optim.base import PerParameterOptimizer, check_lr, check_nonnegative


class SGD(PerParameterOptimizer):
    """SGD; ``nesterov`` needs ``momentum > 0`` and ``dampening == 0`` (as torch requires)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        check_lr(lr)
        check_nonnegative("momentum", momentum)
        check_nonnegative("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"nesterov needs momentum > 0 and dampening == 0, got momentum={momentum}, "
                f"dampening={dampening}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        super().__init__(params, defaults)

    def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        # the buffer is created from the first gradient (b_1 = g), so no state before it
        return {}

    def update(
        self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        param.add_(grad, alpha=-group["lr"])
