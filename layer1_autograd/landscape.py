"""Loss-landscape slices with filter-normalised random directions (Li et al., NeurIPS 2018).

The loss is a function of millions of parameters; we look at it along one or two directions
through the trained weights θ*:

    f(α)    = L(θ* + α d)                  (1-D slice)
    f(α, β) = L(θ* + α d₁ + β d₂)          (2-D slice, drawn as contours)

A raw Gaussian direction d is misleading: networks with ReLU are invariant to rescaling a
unit's incoming weights by c and its outgoing weights by 1/c, so a step of fixed size means a
huge change for a unit with small weights and nothing for one with large weights. Li et al.
normalise the direction *per filter* (for a fully-connected layer: per output unit, i.e. per
row of W) to the norm of the corresponding weights:

    d_{l,i}  ←  d_{l,i} / ‖d_{l,i}‖ · ‖θ_{l,i}‖

Biases (1-D parameters) get a zero direction, as the paper does for biases and batch-norm
parameters. With this normalisation, α = 1 moves every unit by the size of its own weights,
and the sharpness of slices can be compared between networks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["filter_normalized_direction", "slice_1d", "slice_2d"]

Params = dict[str, np.ndarray]


def filter_normalized_direction(params: Params, rng: np.random.Generator) -> Params:
    """A Gaussian direction, each filter (row of a weight) scaled to that filter's norm."""
    direction = {}
    for name, theta in params.items():
        if theta.ndim <= 1:
            direction[name] = np.zeros_like(theta)
            continue
        d = rng.normal(size=theta.shape).astype(theta.dtype)
        axes = tuple(range(1, theta.ndim))  # a filter is everything but the output axis
        d_norm = np.sqrt((d * d).sum(axis=axes, keepdims=True))
        t_norm = np.sqrt((theta * theta).sum(axis=axes, keepdims=True))
        direction[name] = d * (t_norm / np.maximum(d_norm, 1e-12))
    return direction


def _shifted(params: Params, steps: list[tuple[float, Params]]) -> Params:
    out = {}
    for name, theta in params.items():
        moved = theta.copy()
        for scale, d in steps:
            moved += scale * d[name]
        out[name] = moved
    return out


def slice_1d(
    loss_fn: Callable[[Params], float], params: Params, d: Params, alphas: np.ndarray
) -> np.ndarray:
    """L(θ + α d) for every α (shape (len(alphas),))."""
    return np.array([loss_fn(_shifted(params, [(float(a), d)])) for a in alphas])


def slice_2d(
    loss_fn: Callable[[Params], float],
    params: Params,
    d1: Params,
    d2: Params,
    alphas: np.ndarray,
    betas: np.ndarray,
) -> np.ndarray:
    """L(θ + α d₁ + β d₂) on the grid (shape (len(betas), len(alphas)), rows follow β)."""
    return np.array(
        [
            [loss_fn(_shifted(params, [(float(a), d1), (float(b), d2)])) for a in alphas]
            for b in betas
        ]
    )
