"""Deliverable ``gd_quadratic``: GD and heavy-ball rates on quadratics, derived and measured.

For ``f(x) = 1/2 x^T A x - b^T x`` with eigenvalues in ``[mu, L]`` each eigen-direction of the
error contracts by ``|1 - eta lambda_i|`` per step, so ``rho(eta) = max(|1 - eta mu|,
|1 - eta L|)``: ``1 - 1/kappa`` at ``eta = 1/L``, ``(kappa - 1)/(kappa + 1)`` at the best fixed
step ``2/(mu + L)``, divergence past ``2/L``; heavy ball reaches ``(sqrt(kappa) - 1)/(sqrt(kappa) +
1)`` (the derivation is in :mod:`layer0_math.optimization`). This measures each rate on random
quadratics with kappa = 10, 100, 1000 and compares it with the theory.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from layer0_math.deliverables._common import log_spaced
from layer0_math.lab import RunContext, deliverable, pyplot
from layer0_math.linalg import eigh_qr
from layer0_math.optimization import (
    gd_methods,
    heavy_ball,
    make_quadratic,
    measured_rate,
    run_until,
)


def _rates_at(
    ctx: RunContext, ax: Any, kappa: float, metrics: dict[str, float]
) -> dict[str, float]:
    """Run the three methods on one random quadratic: rates into ``metrics``, curves onto ``ax``.

    Returns each method's relative rate error ``|measured - theory| / theory``.
    """
    cfg = ctx.config
    problem = make_quadratic(kappa, cfg["dim"], ctx.rng)
    x0 = np.zeros(cfg["dim"])
    # x* itself is only known to ~eps * kappa: stop well above that rounding floor
    tol = max(cfg["tol"], 1e4 * np.finfo(np.float64).eps * kappa)
    rel_errors = {}
    for name, (eta, beta, theory) in gd_methods(problem.mu, problem.L).items():
        errs, gaps = run_until(problem, heavy_ball(problem, x0, eta, beta), cfg["max_steps"], tol)
        rate = measured_rate(errs)
        rel_errors[name] = abs(rate - theory) / theory
        tag = f"{name}_kappa{kappa:g}"
        metrics[f"rate_{tag}"] = rate
        metrics[f"theory_{tag}"] = theory
        metrics[f"steps_{tag}"] = len(errs) - 1
        steps = np.concatenate([[0], log_spaced(len(errs) - 1) + 1])  # incl. the start
        (line,) = ax.semilogy(steps, gaps[steps], label=f"{name} (rate {rate:.4f})")
        ax.semilogy(steps, gaps[0] * theory ** (2 * steps), "--", color=line.get_color(), lw=0.8)
    ax.set_title(f"kappa = {kappa:g}  (dashed: theory rho^2k)")
    ax.set_xlabel("step")
    ax.set_ylabel("f(x) - f*")
    ax.set_xscale("symlog", linthresh=10)
    ax.legend(fontsize=8)
    return rel_errors


def _divergence(ctx: RunContext, kappa: float) -> dict[str, float]:
    """Past ``eta = 2/L`` the top eigen-direction grows by ``|1 - eta L|`` per step."""
    plt = pyplot()
    dim = ctx.config["dim"]
    problem = make_quadratic(kappa, dim, ctx.rng)
    metrics = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for factor in (1.9, 2.0, 2.1):
        iterates = heavy_ball(problem, np.zeros(dim), factor / problem.L, 0.0)
        errs, gaps = run_until(problem, iterates, max_steps=200)
        ax.semilogy(gaps, label=f"eta = {factor}/L")
        if factor == 2.1:
            growth, theory = measured_rate(errs), factor - 1.0
            metrics["diverge_growth"] = growth
            metrics["diverge_growth_theory"] = theory
            metrics["diverge_growth_rel_error"] = abs(growth - theory) / theory
    ax.set_title(f"kappa = {kappa:g}: the step size limit 2/L")
    ax.set_xlabel("step")
    ax.set_ylabel("f(x) - f*")
    ax.legend()
    ctx.savefig(fig, "gd_divergence.png")
    return metrics


def _plot_contours(ctx: RunContext, kappas: list[float]) -> None:
    """The three methods' first 40 steps on 2-D quadratics, from a start with equal parts of the
    slow and the fast eigen-direction."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(kappas), figsize=(5.5 * len(kappas), 4.5), squeeze=False)
    for ax, kappa in zip(axes[0], kappas, strict=True):
        problem = make_quadratic(kappa, 2, np.random.default_rng(ctx.seed))
        x_star = problem.x_star
        _, V = eigh_qr(problem.A)
        x0 = x_star + 2.0 * (V[:, 0] + V[:, 1]) / math.sqrt(2)
        radius = 2.6
        gx, gy = np.meshgrid(
            np.linspace(x_star[0] - radius, x_star[0] + radius, 200),
            np.linspace(x_star[1] - radius, x_star[1] + radius, 200),
        )
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1) - x_star  # (N, 2)
        gaps = 0.5 * np.einsum("ni,ij,nj->n", pts, problem.A, pts).reshape(gx.shape)
        ax.contour(gx, gy, np.log10(gaps + 1e-12), levels=15, cmap="Greys", linewidths=0.7)
        for (name, (eta, beta, _)), color in zip(
            gd_methods(problem.mu, problem.L).items(), ["C0", "C1", "C2"], strict=True
        ):
            xs = np.array(list(itertools.islice(heavy_ball(problem, x0, eta, beta), 41)))
            ax.plot(xs[:, 0], xs[:, 1], ".-", color=color, label=name, lw=1, ms=3)
        ax.plot(*x_star, "k*", ms=10)
        ax.plot(*x0, "ko", ms=6, label="start")
        ax.set_xlim(x_star[0] - radius, x_star[0] + radius)
        ax.set_ylim(x_star[1] - radius, x_star[1] + radius)
        ax.set_title(f"kappa = {kappa:g}: 40 steps from the same start")
        ax.set_aspect("equal")
        ax.legend(fontsize=8)
    ctx.savefig(fig, "gd_contours_2d.png")


@deliverable(
    quick={"dim": 20, "kappas": [10, 100, 1000], "tol": 1e-10, "max_steps": 200_000},
    full={"dim": 200, "kappas": [10, 100, 1000, 10000], "tol": 1e-12, "max_steps": 2_000_000},
    headline=["rate_rel_error", "momentum_rate_rel_error", "diverge_growth_rel_error"],
)
def gd_quadratic(ctx: RunContext) -> dict[str, float]:
    """Measured against theoretical contraction rates of GD and heavy ball on quadratics."""
    plt = pyplot()
    kappas = [float(k) for k in ctx.config["kappas"]]
    metrics: dict[str, float] = {}
    gd_errors, hb_errors = [], []
    fig, axes = plt.subplots(1, len(kappas), figsize=(5 * len(kappas), 4), squeeze=False)
    for ax, kappa in zip(axes[0], ctx.progress(kappas, desc="kappa"), strict=True):
        rel_errors = _rates_at(ctx, ax, kappa, metrics)
        hb_errors.append(rel_errors.pop("heavy_ball"))
        gd_errors.extend(rel_errors.values())
    ctx.savefig(fig, "gd_loss_curves.png")
    metrics.update(_divergence(ctx, kappas[0]))
    _plot_contours(ctx, kappas[:2])
    metrics["rate_rel_error"] = max(gd_errors)
    metrics["momentum_rate_rel_error"] = max(hb_errors)
    return metrics
