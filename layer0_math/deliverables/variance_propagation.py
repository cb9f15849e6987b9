"""Deliverable ``variance_propagation``: initialisation scale through depth, and standardising.

A layer ``h' = phi(W h)`` with ``W_ij ~ N(0, s^2)`` multiplies the second moment by
``fan_in * s^2 * c_phi`` (``c_phi = 1`` for tanh near 0, ``1/2`` for ReLU), so depth makes it
explode or vanish unless ``s^2 = 1/fan_in`` (Xavier, for tanh) or ``s^2 = 2/fan_in`` (He, for
ReLU) (:mod:`layer0_math.initialization`). This follows the std of activations forward and of
gradients backward through a 50-layer MLP for every scheme and activation. It then shows how
standardising the inputs shrinks the condition number of ``X^T X`` and with it the GD steps to a
tolerance, ``k ~ kappa log(1/tol)`` (:mod:`layer0_math.optimization`).
"""

from __future__ import annotations

import math

import numpy as np

from layer0_math.datasets import load_diabetes
from layer0_math.deliverables._common import log_spaced
from layer0_math.initialization import ACTIVATIONS, INITS, propagate
from layer0_math.lab import RunContext, deliverable, pyplot
from layer0_math.linalg import condition_number
from layer0_math.optimization import Standardizer, gd_least_squares


def _through_depth(ctx: RunContext) -> dict[str, float]:
    """Forward and backward std ratios for every (scheme, activation), plotted per layer."""
    plt = pyplot()
    cfg = ctx.config
    metrics: dict[str, float] = {}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    runs = [(s, a) for a in ACTIVATIONS for s in INITS]
    layers = np.arange(1, cfg["depth"] + 1)
    for scheme, act in ctx.progress(runs, desc="init x activation"):
        fwd, bwd = propagate(cfg["depth"], cfg["width"], cfg["batch"], scheme, act, ctx.rng)
        metrics[f"{scheme}_{act}_std_ratio"] = float(fwd[-1] / fwd[0])
        metrics[f"{scheme}_{act}_grad_std_ratio"] = float(bwd[0] / bwd[-1])
        col = ACTIVATIONS.index(act)
        axes[0, col].semilogy(layers, fwd, label=scheme)
        axes[1, col].semilogy(layers, bwd, label=scheme)
    for col, act in enumerate(ACTIVATIONS):
        axes[0, col].set_title(f"{act}: activation std after layer l")
        axes[1, col].set_title(f"{act}: gradient std dL/dh at layer l's input")
        axes[1, col].set_xlabel("layer")
        axes[0, col].legend()
    ctx.savefig(fig, "variance_by_layer.png")
    return metrics


def _standardizing(ctx: RunContext) -> dict[str, float]:
    """Raw diabetes features (years, mg/dL, ...) against z-scores: kappa(X^T X) and GD steps."""
    plt = pyplot()
    cfg = ctx.config
    metrics: dict[str, float] = {}
    X_raw, y = load_diabetes(scaled=False)
    designs = {
        "raw": np.column_stack([np.ones(len(X_raw)), X_raw]),
        "standardized": Standardizer.fit(X_raw).design(X_raw),
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, X in designs.items():
        kappa_gram = condition_number(X.T @ X)
        _, gaps = gd_least_squares(X, y, cfg["max_steps"], tol=cfg["tol"])
        steps = len(gaps)
        metrics[f"kappa_gram_{name}"] = kappa_gram
        metrics[f"gd_steps_{name}"] = steps
        metrics[f"gd_converged_{name}"] = int(steps < cfg["max_steps"])
        # theory: the slowest direction contracts by 1 - 1/kappa per step
        metrics[f"gd_steps_theory_{name}"] = kappa_gram * math.log(1.0 / cfg["tol"])
        shown = log_spaced(steps)
        ax.loglog(shown + 1, np.array(gaps)[shown], label=f"{name} (kappa {kappa_gram:.3g})")
    # a lower bound when the raw run hit max_steps (gd_converged_raw == 0)
    metrics["standardize_step_ratio"] = metrics["gd_steps_raw"] / metrics["gd_steps_standardized"]
    ax.set_xlabel("GD step (eta = 1/L)")
    ax.set_ylabel("loss - optimum")
    ax.set_title("diabetes regression: raw vs standardized features")
    ax.legend()
    ctx.savefig(fig, "standardization_gd.png")
    return metrics


@deliverable(
    quick={"depth": 50, "width": 256, "batch": 512, "tol": 1e-6, "max_steps": 100_000},
    full={"width": 512, "batch": 1024, "max_steps": 2_000_000},
    headline=["he_relu_std_ratio", "kappa_gram_raw", "kappa_gram_standardized"],
)
def variance_propagation(ctx: RunContext) -> dict[str, float]:
    """Activation/gradient std through a deep MLP per init; standardisation vs kappa and GD."""
    return {**_through_depth(ctx), **_standardizing(ctx)}
