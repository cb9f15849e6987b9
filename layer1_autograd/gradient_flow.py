"""How gradients flow (or fail to) through a deep network, and why initialisation decides it.

Backpropagation through L layers multiplies the gradient by one Jacobian per layer:

    ∂L/∂a_l = W_{l+1}ᵀ ( φ'(z_{l+1}) ⊙ ∂L/∂a_{l+1} )        ∂L/∂W_l = (φ'(z_l) ⊙ ∂L/∂a_l)ᵀ a_{l-1}

so the gradient reaching layer 1 is a product of L factors of size roughly ‖W‖·E[φ'].
If each factor is below 1 the gradient *vanishes* geometrically with depth; above 1 it *explodes*.

- Sigmoid: φ' ≤ 1/4, so even with well-scaled weights every layer shrinks the gradient by ~4×.
- Tanh: φ'(0) = 1, fine near zero, but saturated units (|z| large) have φ' ≈ 0.
- ReLU: φ' ∈ {0, 1}; half the units pass the gradient, so the weights must make up a factor 2.

He et al. (2015) choose Var(W) so that the variance of the signal is preserved layer to layer
for ReLU: with n_in inputs, Var(z_l) = n_in Var(W) E[a²_{l−1}] and E[a²] = Var(z)/2 for ReLU, so

    Var(W) = 2 / n_in                               (He / Kaiming normal initialisation)

"Naive" choices break this: N(0, 1) multiplies the signal by √(n_in/2) per ReLU layer (explosion)
and saturates sigmoid/tanh units; N(0, 0.01²) shrinks it by ~0.01·√n_in per layer (vanishing).
This module sets those initialisations on a tensor-engine :class:`~layer1_autograd.nn.MLP` and
records the norm of ∂L/∂W_l for every layer l while training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from layer1_autograd import functional as F
from layer1_autograd.nn import MLP, SGD
from layer1_autograd.tensor import Tensor

__all__ = ["INITS", "initialise", "layer_grad_norms", "FlowRecord", "record_gradient_flow"]

INITS = ("naive_small", "naive_large", "he")


def initialise(model: MLP, scheme: str, rng: np.random.Generator) -> None:
    """Overwrite the weights of ``model`` with ``scheme``; biases become zero."""
    for layer in model.layers:
        n_out, n_in = layer.weight.shape
        if scheme == "naive_small":
            std = 0.01
        elif scheme == "naive_large":
            std = 1.0
        elif scheme == "he":
            std = np.sqrt(2.0 / n_in)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}; expected one of {INITS}")
        layer.weight.data[...] = rng.normal(0.0, std, (n_out, n_in))
        if layer.bias is not None:
            layer.bias.data[...] = 0.0


def layer_grad_norms(model: MLP) -> np.ndarray:
    """‖∂L/∂W_l‖_F for each layer l (first to last); NaN where a layer has no gradient."""
    return np.array(
        [
            np.linalg.norm(layer.weight.grad) if layer.weight.grad is not None else np.nan
            for layer in model.layers
        ]
    )


@dataclass
class FlowRecord:
    """Per-step training loss and per-layer weight-gradient norms (steps, layers)."""

    activation: str
    init: str
    losses: list[float] = field(default_factory=list)
    grad_norms: list[np.ndarray] = field(default_factory=list)

    @property
    def norms(self) -> np.ndarray:
        return np.array(self.grad_norms)  # (steps, layers)

    def first_to_last_ratio(self, step: int = 0) -> float:
        """‖∂L/∂W_1‖ / ‖∂L/∂W_L‖ at ``step``: ≪ 1 vanishing, ≫ 1 exploding."""
        n = self.norms[step]
        return float(n[0] / n[-1])


def record_gradient_flow(
    x: np.ndarray,
    y: np.ndarray,
    *,
    depth: int,
    width: int,
    activation: str,
    init: str,
    steps: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
) -> FlowRecord:
    """Train a ``depth``-layer MLP with plain SGD and record the gradient norms at every step.

    Training stops early, keeping the record so far, if the loss stops being finite.
    """
    sizes = [x.shape[1], *([width] * (depth - 1)), int(y.max()) + 1]
    model = MLP(sizes, activation=activation, rng=rng, dtype=x.dtype)
    initialise(model, init, rng)
    opt = SGD(model.parameters(), lr=lr)
    record = FlowRecord(activation, init)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is the phenomenon under study
        for _ in range(steps):
            idx = rng.integers(0, len(x), batch_size)
            opt.zero_grad()
            loss = F.cross_entropy(model(Tensor(x[idx])), y[idx])
            if not np.isfinite(loss.item()):
                break
            loss.backward()
            record.losses.append(loss.item())
            record.grad_norms.append(layer_grad_norms(model))
            opt.step()
    return record
