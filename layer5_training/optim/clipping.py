"""Gradient clipping by global norm and by value.

By global norm (Pascanu et al. 2013): treat every gradient of the model as one long vector g and
bound its p-norm, ``‖g‖_p = (Σ_i ‖g_i‖_p^p)^{1/p}`` (for p = ∞, ``max_i ‖g_i‖_∞``)::

    c = min(1, max_norm / (‖g‖_p + 10⁻⁶))           g_i ← c · g_i   for every tensor i

so the direction of the update is kept and only its length is capped; below the threshold the
gradient is untouched. The 10⁻⁶ keeps the division finite at ‖g‖ = 0 (torch's constant). By
value: ``g ← clamp(g, −v, v)`` elementwise, which also changes the direction.

When it helps: a rare huge gradient (a loss spike from a bad batch, an exploding recurrent or
deep Transformer update, the first steps at a high learning rate) would throw the weights far
from where training was; clipping by norm bounds the step to ``η · max_norm`` while leaving
ordinary steps alone. The returned pre-clip norm is the quantity worth logging: a rising norm
foretells divergence.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

Params = torch.Tensor | Iterable[torch.Tensor]


def _grads(params: Params) -> list[torch.Tensor]:
    """The gradients of ``params`` that exist (a parameter with grad None is skipped)."""
    if isinstance(params, torch.Tensor):
        params = [params]
    return [p.grad for p in params if p.grad is not None]


def _total_norm(grads: list[torch.Tensor], norm_type: float) -> torch.Tensor:
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads])  # (n_tensors,)
    return torch.linalg.vector_norm(norms, norm_type)  # the norm of the concatenated vector


def _check_norm_type(norm_type: float) -> float:
    if not float(norm_type) > 0:
        raise ValueError(f"norm_type must be > 0 (or inf), got {norm_type}")
    return float(norm_type)


def grad_norm(params: Params, norm_type: float = 2.0) -> torch.Tensor:
    """The p-norm of all gradients of ``params`` taken together as one vector."""
    return _total_norm(_grads(params), _check_norm_type(norm_type))


def clip_grad_norm_(
    params: Params, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> torch.Tensor:
    """Scale the gradients in place so their global p-norm is at most ``max_norm``.

    Returns the norm before clipping. A non-finite norm raises with ``error_if_nonfinite``;
    otherwise the gradients are multiplied by a nan/0 factor, as torch does.
    """
    if not max_norm >= 0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    grads = _grads(params)  # once: ``params`` may be a generator
    total = _total_norm(grads, _check_norm_type(norm_type))
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is {total.item()}; "
            "set error_if_nonfinite=False to clip anyway"
        )
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.device, g.dtype))
    return total


def clip_grad_value_(params: Params, clip_value: float) -> None:
    """Clamp every gradient element of ``params`` into ``[-clip_value, clip_value]`` in place."""
    if not clip_value >= 0:
        raise ValueError(f"clip_value must be >= 0, got {clip_value}")
    for g in _grads(params):
        g.clamp_(-clip_value, clip_value)
