"""Weight initialisation: the standard deviation that keeps a signal's variance through depth.

For a layer z = W a with n_in inputs and weights W_ij ~ N(0, σ²), independent of a,

    Var(z) = n_in · σ² · E[a²]

so the scale of the signal is multiplied by √(n_in σ² E[a²]/Var(z_prev)) per layer, and over L
layers by the L-th power of that: anything but 1 vanishes or explodes geometrically.

- Glorot & Bengio (2010), "xavier": σ² = 2 / (n_in + n_out), the compromise between keeping the
  forward variance (n_in σ² = 1) and the backward one (n_out σ² = 1) for a linear/tanh unit.
- He et al. (2015), "he": σ² = 2 / n_in. A ReLU zeroes half its inputs, so E[a²] = Var(z)/2 and
  the weights must make up the factor 2.
- "naive" N(0, 1) multiplies the signal by about √(n_in/2) per ReLU layer (explosion) and
  saturates tanh/sigmoid units; "small" N(0, 0.01²) shrinks it by 0.01·√n_in (vanishing).

This is the project's one table of schemes: layer 0's variance-propagation experiment and
layer 1's gradient-flow study both read it.

:func:`propagate` measures the recursion in a deep bias-free MLP ``h_l = φ(h_{l-1} W_l)``: the
standard deviation of the activations forward and of ∂L/∂h backward, layer by layer. Backward,
``∂L/∂h_{l-1} = (∂L/∂h_l ⊙ φ'(z_l)) W_lᵀ`` multiplies the variance by ``n_out · σ² · E[φ'²]``,
so the same schemes keep (or fail to keep) the gradient's scale.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ACTIVATIONS", "INITS", "init_std", "propagate"]

INITS = ("naive", "small", "xavier", "he")


def init_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """The weight standard deviation σ of ``scheme`` for a layer with ``fan_in`` inputs and
    ``fan_out`` outputs."""
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"fan_in and fan_out must be >= 1, got {fan_in} and {fan_out}")
    if scheme == "naive":
        return 1.0
    if scheme == "small":
        return 0.01
    if scheme == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if scheme == "he":
        return math.sqrt(2.0 / fan_in)
    raise ValueError(f"unknown init {scheme!r}; expected one of {list(INITS)}")


ACTIVATIONS = ("tanh", "relu")  # the two whose gains the schemes are derived for (numpy only)


def _activate(z: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
    """φ(z) and φ'(z) for ``activation`` in :data:`ACTIVATIONS`."""
    if activation == "tanh":
        h = np.tanh(z)
        return h, 1.0 - h**2
    return np.maximum(z, 0.0), (z > 0).astype(z.dtype)


def propagate(
    depth: int, width: int, batch: int, scheme: str, activation: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Std of the activations after each layer (forward) and of ``∂L/∂h`` at each layer's input
    (backward) in a bias-free MLP ``h_l = φ(h_{l-1} W_l)`` fed N(0, 1) inputs, backpropagating
    an N(0, 1) upstream gradient. float64, so even 1e±50 stays representable. Shapes (depth,).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    std = init_std(scheme, width, width)
    weights = [rng.standard_normal((width, width)) * std for _ in range(depth)]
    h = rng.standard_normal((batch, width))  # (B, W)
    slopes, forward = [], []
    for W in weights:
        h, slope = _activate(h @ W, activation)  # (B, W) each
        slopes.append(slope)
        forward.append(h.std())
    grad = rng.standard_normal((batch, width))  # ∂L/∂h_depth
    backward = []
    for W, slope in zip(reversed(weights), reversed(slopes), strict=True):
        grad = (grad * slope) @ W.T  # ∂L/∂h_{l-1}
        backward.append(grad.std())
    return np.array(forward), np.array(backward[::-1])
