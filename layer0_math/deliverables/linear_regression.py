"""Deliverable ``linear_regression``: one least-squares problem, five solvers.

Normal equations, Householder QR and the SVD (:mod:`layer0_math.linalg`), full-batch GD and
averaged mini-batch SGD on standardised features (:mod:`layer0_math.optimization`), on
scikit-learn's diabetes data and on synthetic data with known weights; every solution is compared
with ``numpy.linalg.lstsq`` in raw units. On Vandermonde matrices with exact data the normal
equations' error grows like ``eps kappa^2`` where QR's and the SVD's grow like ``eps kappa``.
"""

from __future__ import annotations

import math

import numpy as np

from layer0_math.datasets import DIABETES_FEATURES, load_diabetes
from layer0_math.deliverables._common import log_spaced
from layer0_math.lab import RunContext, deliverable, pyplot
from layer0_math.linalg import (
    condition_number,
    lstsq_normal_equations,
    lstsq_qr,
    lstsq_svd,
)
from layer0_math.optimization import Standardizer, gd_least_squares, sgd_least_squares

_DIRECT = {"normal_eq": lstsq_normal_equations, "qr": lstsq_qr, "svd": lstsq_svd}


def _rel_diff(w: np.ndarray, ref: np.ndarray) -> float:
    """``max |w - ref| / max |ref|``: the largest coefficient error relative to the largest one."""
    return float(np.max(np.abs(w - ref)) / np.max(np.abs(ref)))


def _regression_case(
    ctx: RunContext, name: str, X: np.ndarray, y: np.ndarray
) -> tuple[dict[str, float], dict[str, list[float]], np.ndarray, dict[str, np.ndarray]]:
    """All five solvers on one data set; coefficients are compared in raw units with lstsq."""
    cfg = ctx.config
    design = np.column_stack([np.ones(len(X)), X])
    w_ref = np.linalg.lstsq(design, y)[0]
    scaler = Standardizer.fit(X)
    Z = scaler.design(X)  # iterative methods run on standardized features: a smaller kappa
    w_gd, gd_gaps = gd_least_squares(Z, y, cfg["gd_steps"])
    w_sgd, sgd_gaps = sgd_least_squares(
        Z, y, cfg["sgd_epochs"], cfg["batch_size"], cfg["sgd_lr"], ctx.rng
    )
    solutions = {key: solver(design, y) for key, solver in _DIRECT.items()}
    solutions["gd"] = scaler.to_raw(w_gd)
    solutions["sgd"] = scaler.to_raw(w_sgd)
    metrics = {f"{name}_{k}_coef_diff": _rel_diff(w, w_ref) for k, w in solutions.items()}
    metrics[f"{name}_kappa_design"] = condition_number(design)
    metrics[f"{name}_kappa_standardized"] = condition_number(Z)
    metrics[f"{name}_mse"] = float(np.mean((design @ w_ref - y) ** 2))
    return metrics, {"gd": gd_gaps, "sgd": sgd_gaps}, w_ref, solutions


def _ill_conditioned(degrees: list[int], n_points: int) -> dict[str, list[float]]:
    """Vandermonde least squares with exact data ``y = X w_true``: errors vs kappa per solver."""
    x = np.linspace(0.0, 1.0, n_points)
    out: dict[str, list[float]] = {"kappa": [], "normal_eq": [], "qr": [], "svd": []}
    for degree in degrees:
        X = np.vander(x, degree + 1, increasing=True)  # columns 1, x, ..., x^degree
        w_true = np.ones(degree + 1)
        y = X @ w_true
        out["kappa"].append(condition_number(X))
        for key, solver in _DIRECT.items():
            with np.errstate(all="ignore"):
                try:
                    err = float(np.max(np.abs(solver(X, y) - w_true)))
                except np.linalg.LinAlgError:  # X^T X numerically singular
                    err = math.inf
            out[key].append(err)
    return out


def _synthetic(ctx: RunContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features with unequal scales and offsets, known weights (intercept first), noisy targets."""
    cfg = ctx.config
    n, d = cfg["synthetic_n"], cfg["synthetic_d"]
    X = ctx.rng.standard_normal((n, d)) * np.linspace(0.5, 2.0, d) + 1.0
    w_true = ctx.rng.standard_normal(d + 1)
    y = w_true[0] + X @ w_true[1:] + cfg["noise"] * ctx.rng.standard_normal(n)
    return X, y, w_true


def _plot_loss_curves(ctx: RunContext, curves: dict[str, dict[str, list[float]]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(11, 4))
    for ax, (name, by_method) in zip(axes, curves.items(), strict=True):
        for method, gaps in by_method.items():
            unit = "step" if method == "gd" else "epoch"
            shown = log_spaced(len(gaps))
            ax.loglog(shown + 1, np.array(gaps)[shown], label=f"{method} (per {unit})")
        ax.set_title(f"{name}: loss - optimum (averaged iterate for SGD)")
        ax.legend()
    ctx.savefig(fig, "regression_loss_curves.png")


def _plot_coefficients(ctx: RunContext, ref: np.ndarray, coefs: dict[str, np.ndarray]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.15
    ax.bar(np.arange(len(ref)) - 2.5 * width, ref, width, label="numpy lstsq", color="k")
    for j, (method, w) in enumerate(coefs.items()):
        ax.bar(np.arange(len(ref)) + (j - 1.5) * width, w, width, label=method)
    ax.set_xticks(np.arange(len(ref)), ["bias", *DIABETES_FEATURES])
    ax.set_title("diabetes: coefficients from every solver")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "regression_coefficients.png")


def _plot_ill_conditioning(ctx: RunContext, ill: dict[str, list[float]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    kappa = np.array(ill["kappa"])
    eps = np.finfo(np.float64).eps
    for key, marker in (("normal_eq", "o"), ("qr", "s"), ("svd", "^")):
        ax.loglog(kappa, np.minimum(ill[key], 1e3), marker, label=key)
    ax.loglog(kappa, eps * kappa, "k--", lw=0.8, label="eps kappa")
    ax.loglog(kappa, eps * kappa**2, "k:", lw=0.8, label="eps kappa^2")
    ax.set_xlabel("kappa(X), Vandermonde degree 1..14")
    ax.set_ylabel("max |w - w_true|")
    ax.set_ylim(1e-17, 1e3)
    ax.legend()
    ctx.savefig(fig, "regression_ill_conditioning.png")


def _summaries(metrics: dict[str, float]) -> dict[str, float]:
    """The worst coefficient difference of the iterative and of the direct solvers."""
    iterative = ("_gd_coef_diff", "_sgd_coef_diff")
    direct = tuple(f"_{key}_coef_diff" for key in _DIRECT)
    return {
        "max_coef_diff": max(v for k, v in metrics.items() if k.endswith(iterative)),
        "max_analytic_coef_diff": max(v for k, v in metrics.items() if k.endswith(direct)),
    }


@deliverable(
    quick={
        "gd_steps": 20_000,
        "sgd_epochs": 2_000,
        "batch_size": 32,
        "sgd_lr": 0.1,
        "synthetic_n": 1_000,
        "synthetic_d": 20,
        "noise": 0.1,
        "degrees": list(range(1, 15)),
        "ill_degree": 9,
        "n_points": 100,
    },
    full={
        "gd_steps": 200_000,
        "sgd_epochs": 5_000,
        "synthetic_n": 10_000,
        "synthetic_d": 50,
        "n_points": 1_000,
    },
    headline=["max_coef_diff", "ill_normal_eq_error", "ill_qr_error"],
)
def linear_regression(ctx: RunContext) -> dict[str, float]:
    """Least squares five ways on real and synthetic data; normal equations vs QR digits."""
    cfg = ctx.config
    metrics: dict[str, float] = {}
    X_diab, y_diab = load_diabetes()  # bundled with scikit-learn: (442, 10)
    X_syn, y_syn, w_true = _synthetic(ctx)
    curves, coefs, refs = {}, {}, {}
    cases = {"diabetes": (X_diab, y_diab), "synthetic": (X_syn, y_syn)}
    for name in ctx.progress(cases, desc="regression"):
        case_metrics, curves[name], refs[name], coefs[name] = _regression_case(
            ctx, name, *cases[name]
        )
        metrics.update(case_metrics)
    metrics["synthetic_weight_error"] = float(np.max(np.abs(refs["synthetic"] - w_true)))
    metrics.update(_summaries(metrics))

    ill = _ill_conditioned(cfg["degrees"], cfg["n_points"])
    i = cfg["degrees"].index(cfg["ill_degree"])
    metrics["ill_kappa"] = ill["kappa"][i]
    for key in _DIRECT:
        metrics[f"ill_{key}_error"] = ill[key][i]

    _plot_loss_curves(ctx, curves)
    _plot_coefficients(ctx, refs["diabetes"], coefs["diabetes"])
    _plot_ill_conditioning(ctx, ill)
    return metrics
