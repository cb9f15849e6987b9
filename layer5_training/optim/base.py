"""The loop every optimiser here shares: for each parameter with a gradient, one update.

An optimiser is a rule ``θ_{t+1} = U(θ_t, g_t, s_t)`` applied to each parameter tensor θ on its
own, with its gradient ``g_t = ∂L/∂θ`` and a per-parameter state ``s`` (momentum buffers, moment
estimates, a step count) kept in ``optimizer.state[θ]``. Hyper-parameters live per parameter
group (``optimizer.param_groups``), so two groups can carry different ``lr`` or
``weight_decay``. :class:`PerParameterOptimizer` writes that loop once; a subclass names its
state (:meth:`init_state`) and its rule (:meth:`update`). A parameter whose ``grad`` is None
(frozen, or unused this step) is skipped and its state is left alone, as torch.optim does.

The state holds tensors and plain numbers only, so ``state_dict`` / ``load_state_dict`` (torch's
own) round-trip it exactly and layer 3's safetensors checkpoints can store it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def check_lr(lr: float) -> None:
    if not lr >= 0.0:
        raise ValueError(f"lr must be >= 0, got {lr}")


def check_nonnegative(name: str, value: float) -> None:
    if not value >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def check_positive(name: str, value: float) -> None:
    if not value > 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_unit_interval(name: str, value: float) -> None:
    """``value`` in [0, 1): a decay rate (β, α, momentum of an average)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def check_betas(betas: tuple[float, float]) -> None:
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas}")
    check_unit_interval("betas[0]", betas[0])
    check_unit_interval("betas[1]", betas[1])


class PerParameterOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose step applies :meth:`update` to each parameter in turn."""

    def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """The state of a parameter before its first update."""
        raise NotImplementedError

    def update(
        self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """Update ``param`` in place from ``grad``, advancing ``state``."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[param]
                if not state:
                    state.update(self.init_state(param, group))
                self.update(param, param.grad, state, group)
        return loss
