"""RMSprop (Hinton, Coursera lecture 6e, 2012), with momentum and the centred variant (Graves 2013).

Divide the gradient by a running root-mean-square of its recent magnitudes::

    g ← g_t + λ θ_t
    v_t = α v_{t−1} + (1 − α) g²                        (mean square)
    ḡ_t = α ḡ_{t−1} + (1 − α) g,  s = √(v_t − ḡ_t²)      centred: an estimate of the std
    s = √v_t                                             otherwise
    b_t = μ b_{t−1} + g / (s + ε),  θ ← θ − η b_t        with momentum μ > 0
    θ ← θ − η g / (s + ε)                                 without

ε is added outside the square root (torch.optim.RMSprop's convention; TensorFlow's adds it
inside). Unlike Adam there is no bias correction, so early steps with v ≈ (1 − α) g² are large.

When it helps: the ancestor of Adam, still used for reinforcement learning (DQN, A3C) and
recurrent nets, where non-stationary gradients want a short memory (α = 0.99 ≈ 100 steps);
the centred version normalises by the variance rather than the raw second moment, which can
stabilise training when the gradient has a large mean.
"""

from __future__ import annotations

from typing import Any

import torch

from layer5_training.optim.base import (
    PerParameterOptimizer,
    check_lr,
    check_nonnegative,
    check_positive,
    check_unit_interval,
)


class RMSprop(PerParameterOptimizer):
    """RMSprop; ``centered`` subtracts the squared running mean, ``momentum`` adds a buffer."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        check_lr(lr)
        check_unit_interval("alpha", alpha)
        check_positive("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("momentum", momentum)
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
        }
        super().__init__(params, defaults)

    def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0, "square_avg": torch.zeros_like(param)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(param)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(param)
        return state

    def update(
        self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        alpha = group["alpha"]
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg.mul_(alpha).add_(grad, alpha=1 - alpha)
            rms = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            rms = square_avg.sqrt()
        rms.add_(group["eps"])
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).addcdiv_(grad, rms)
            param.add_(buf, alpha=-group["lr"])
        else:
            param.addcdiv_(grad, rms, value=-group["lr"])
