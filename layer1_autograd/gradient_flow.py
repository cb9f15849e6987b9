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

"Naive" choices break this: N(0, 1) ("naive") multiplies the signal by √(n_in/2) per ReLU layer
(explosion) and saturates sigmoid/tanh units; N(0, 0.01²) ("small") shrinks it by ~0.01·√n_in per
layer (vanishing). The schemes are layer 0's one table (:mod:`layer0_math.initialization`); this
module sets them on a tensor-engine :class:`~layer1_autograd.nn.MLP` and records the norm of
∂L/∂W_l for every layer l while training it with the one loop (``training.fit``).
A loss that overflows is part of the phenomenon, not a failure: the record of that setting stops
at the last finite step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from layer0_math.datasets import load_digits
from layer0_math.initialization import INITS as SCHEMES
from layer0_math.initialization import init_std
from layer1_autograd import functional as F
from layer1_autograd.nn import MLP, SGD
from layer1_autograd.tensor import Tensor
from layer1_autograd.training import NonFiniteLossError, fit

__all__ = [
    "INITS",
    "initialise",
    "layer_grad_norms",
    "FlowRecord",
    "record_gradient_flow",
    "standardised_digits",
]

# The study's three schemes, in its order: vanishing, exploding, variance-preserving for ReLU.
INITS = ("small", "naive", "he")


def initialise(model: MLP, scheme: str, rng: np.random.Generator) -> None:
    """Overwrite the weights of ``model`` with N(0, σ²), σ from ``scheme``; biases become zero.

    ``scheme`` is any of layer 0's schemes (``"naive"``, ``"small"``, ``"xavier"``, ``"he"``).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {list(SCHEMES)}")
    for layer in model.layers:
        n_out, n_in = layer.weight.shape
        std = init_std(scheme, n_in, n_out)
        layer.weight.data[...] = rng.normal(0.0, std, (n_out, n_in))
        if layer.bias is not None:
            layer.bias.data[...] = 0.0


def standardised_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits as (1797, 64) float64 vectors, standardised over all pixels."""
    x, y = load_digits()
    x = x.reshape(len(x), -1).astype(np.float64) / 16.0
    return (x - x.mean()) / x.std(), y


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

    Training stops early, keeping the record so far, if the loss stops being finite: the loop
    raises :class:`~layer1_autograd.training.NonFiniteLossError` before that step's backward
    pass, and the record ends at the last finite step.
    """
    sizes = [x.shape[1], *([width] * (depth - 1)), int(y.max()) + 1]
    model = MLP(sizes, activation=activation, rng=rng, dtype=x.dtype)
    initialise(model, init, rng)
    record = FlowRecord(activation, init)

    def loss_fn(step: int) -> Tensor:
        idx = rng.integers(0, len(x), batch_size)
        return F.cross_entropy(model(Tensor(x[idx])), y[idx])

    def record_step(step: int) -> None:  # after backward, before the update
        record.grad_norms.append(layer_grad_norms(model))

    with np.errstate(over="ignore", invalid="ignore"):  # overflow is the phenomenon under study
        try:
            history = fit(
                loss_fn, SGD(model.parameters(), lr=lr), steps, after_backward=record_step
            )
        except NonFiniteLossError as stop:
            history = stop.history
    record.losses = history.losses
    return record
