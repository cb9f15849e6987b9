"""Layer 0's deliverables: optimisation, regression and initialisation seen through linear algebra.

1. :func:`gd_quadratic` re-derives the convergence rate of gradient descent on a quadratic and
   measures it. For ``f(x) = 1/2 x^T A x - b^T x`` (A symmetric, eigenvalues in ``[mu, L]``) the
   error ``e_k = x_k - x*`` obeys ``e_{k+1} = (I - eta A) e_k``, so along the eigenvector of
   ``lambda_i`` it shrinks by ``|1 - eta lambda_i|`` per step and the worst case is

       rho(eta) = max(|1 - eta mu|, |1 - eta L|):
       eta = 1/L          -> rho = 1 - mu/L = 1 - 1/kappa,
       eta = 2/(mu + L)   -> rho = (kappa - 1)/(kappa + 1)   (the best fixed step),
       eta > 2/L          -> |1 - eta L| > 1: divergence.

   Heavy-ball momentum ``x_{k+1} = x_k - eta grad f(x_k) + beta (x_k - x_{k-1})`` with
   ``eta = 4/(sqrt(L) + sqrt(mu))^2`` and ``beta = ((sqrt(kappa) - 1)/(sqrt(kappa) + 1))^2``
   contracts at ``(sqrt(kappa) - 1)/(sqrt(kappa) + 1)``: kappa is replaced by its square root.
2. :func:`linear_regression` solves least squares on scikit-learn's diabetes data and on
   synthetic data with known weights in five ways (normal equations, QR, SVD, full-batch GD,
   mini-batch SGD with iterate averaging), and shows on Vandermonde matrices that the normal
   equations lose twice the digits QR loses (error ~ eps kappa^2 against eps kappa).
3. :func:`variance_propagation` follows the standard deviation of activations forward and of
   gradients backward through a deep MLP. A layer ``h' = phi(W h)`` with ``W_ij ~ N(0, s^2)``
   multiplies the second moment by ``fan_in * s^2 * c_phi`` (``c_phi = 1`` for tanh near 0,
   ``1/2`` for ReLU), so depth makes it explode or vanish unless ``s^2 = 1/fan_in`` (Xavier,
   for tanh) or ``s^2 = 2/fan_in`` (He, for ReLU). It also shows how standardising the inputs
   shrinks the condition number of ``X^T X`` and with it the GD steps to a tolerance,
   ``k ~ kappa log(1/tol)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from layer0_math.datasets import DIABETES_FEATURES, load_diabetes
from layer0_math.lab import RunContext, deliverable
from layer0_math.linalg import (
    condition_number,
    eigh_qr,
    householder_qr,
    lstsq_normal_equations,
    lstsq_qr,
    lstsq_svd,
)


def _log_spaced(n: int, points: int = 1000) -> np.ndarray:
    """About ``points`` distinct indices in [0, n), log-spaced: enough to draw a log-x curve."""
    return np.unique(np.geomspace(1, n, points).astype(int)) - 1


# ------------------------------------------------------------------ 1. GD on a quadratic


@dataclass(frozen=True)
class Quadratic:
    """``f(x) = 1/2 x^T A x - b^T x`` with known spectrum and minimiser ``x* = A^-1 b``."""

    A: np.ndarray  # (d, d) symmetric positive definite
    b: np.ndarray  # (d,)
    x_star: np.ndarray  # (d,)
    mu: float
    L: float

    def gap(self, x: np.ndarray) -> float:
        """``f(x) - f(x*) = 1/2 e^T A e`` with ``e = x - x*`` (no cancellation)."""
        e = x - self.x_star
        return 0.5 * float(e @ self.A @ e)


def make_quadratic(kappa: float, dim: int, rng: np.random.Generator) -> Quadratic:
    """A random rotation of ``diag(linspace(1, kappa, dim))``: mu = 1, L = kappa exactly."""
    if dim < 2 or kappa < 1:
        raise ValueError(f"need dim >= 2 and kappa >= 1, got dim={dim}, kappa={kappa}")
    Q, _ = householder_qr(rng.standard_normal((dim, dim)))
    eigenvalues = np.linspace(1.0, kappa, dim)
    b = rng.standard_normal(dim)
    x_star = Q @ ((Q.T @ b) / eigenvalues)  # A^-1 b through the eigendecomposition
    A = (Q * eigenvalues) @ Q.T
    return Quadratic((A + A.T) / 2, b, x_star, 1.0, float(kappa))


def heavy_ball(problem: Quadratic, x0: np.ndarray, eta: float, beta: float) -> Iterator[np.ndarray]:
    """Yield x0, x1, ... of ``x <- x - eta grad f(x) + beta (x - x_prev)`` (beta = 0: GD)."""
    x_prev, x = x0.copy(), x0.copy()
    yield x
    while True:
        grad = problem.A @ x - problem.b  # (d,)
        x, x_prev = x - eta * grad + beta * (x - x_prev), x
        yield x


def run_until(
    problem: Quadratic, iterates: Iterator[np.ndarray], max_steps: int, tol: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Error norms ``||x_k - x*||`` and gaps ``f(x_k) - f*`` for k = 0..K, shapes (K + 1,).

    Stops after ``max_steps`` steps, once the error falls to ``tol`` times the first one, or
    once it grows past ``1e12`` times the first one (divergence).
    """
    errs: list[float] = []
    gaps: list[float] = []
    for x in itertools.islice(iterates, max_steps + 1):
        errs.append(float(np.linalg.norm(x - problem.x_star)))
        gaps.append(problem.gap(x))
        if len(errs) > 1 and not tol * errs[0] < errs[-1] < 1e12 * errs[0]:
            break
    return np.array(errs), np.array(gaps)


def measured_rate(errs: np.ndarray) -> float:
    """The contraction per step over the second half of a run: ``(|e_K| / |e_K/2|)^(2/K)``.

    The first half lets the faster-decaying eigen-directions die out, so what remains is the
    asymptotic (worst-case) rate.
    """
    k = len(errs) - 1
    if k < 2:
        raise ValueError(f"need at least 2 steps to measure a rate, got {k}")
    half = k // 2
    return float((errs[k] / errs[half]) ** (1.0 / (k - half)))


def _gd_methods(mu: float, L: float) -> dict[str, tuple[float, float, float]]:
    """name -> (eta, beta, theoretical rate) for the three methods compared."""
    kappa = L / mu
    root = math.sqrt(kappa)
    return {
        "gd_1_over_L": (1.0 / L, 0.0, 1.0 - mu / L),
        "gd_optimal": (2.0 / (mu + L), 0.0, (kappa - 1) / (kappa + 1)),
        "heavy_ball": (
            4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2,
            ((root - 1) / (root + 1)) ** 2,
            (root - 1) / (root + 1),
        ),
    }


def _plot_contours(ctx: RunContext, kappas: list[float]) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(kappas), figsize=(5.5 * len(kappas), 4.5), squeeze=False)
    for ax, kappa in zip(axes[0], kappas, strict=True):
        problem = make_quadratic(kappa, 2, np.random.default_rng(ctx.seed))
        x_star = problem.x_star
        _, V = eigh_qr(problem.A)
        x0 = x_star + 2.0 * (V[:, 0] + V[:, 1]) / math.sqrt(2)  # equal parts slow and fast
        radius = 2.6
        gx, gy = np.meshgrid(
            np.linspace(x_star[0] - radius, x_star[0] + radius, 200),
            np.linspace(x_star[1] - radius, x_star[1] + radius, 200),
        )
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1) - x_star  # (N, 2)
        gaps = 0.5 * np.einsum("ni,ij,nj->n", pts, problem.A, pts).reshape(gx.shape)
        ax.contour(gx, gy, np.log10(gaps + 1e-12), levels=15, cmap="Greys", linewidths=0.7)
        for (name, (eta, beta, _)), color in zip(
            _gd_methods(problem.mu, problem.L).items(), ["C0", "C1", "C2"], strict=True
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
    import matplotlib.pyplot as plt

    cfg = ctx.config
    kappas = [float(k) for k in cfg["kappas"]]
    metrics: dict[str, float] = {}
    gd_errors, hb_errors = [], []
    fig, axes = plt.subplots(1, len(kappas), figsize=(5 * len(kappas), 4), squeeze=False)
    for ax, kappa in zip(axes[0], ctx.progress(kappas, desc="kappa"), strict=True):
        problem = make_quadratic(kappa, cfg["dim"], ctx.rng)
        x0 = np.zeros(cfg["dim"])
        # x* itself is only known to ~eps * kappa: stop well above that rounding floor
        tol = max(cfg["tol"], 1e4 * np.finfo(np.float64).eps * kappa)
        for name, (eta, beta, theory) in _gd_methods(problem.mu, problem.L).items():
            iterates = heavy_ball(problem, x0, eta, beta)
            errs, gaps = run_until(problem, iterates, cfg["max_steps"], tol=tol)
            rate = measured_rate(errs)
            rel = abs(rate - theory) / theory
            (hb_errors if name == "heavy_ball" else gd_errors).append(rel)
            tag = f"{name}_kappa{kappa:g}"
            metrics[f"rate_{tag}"] = rate
            metrics[f"theory_{tag}"] = theory
            metrics[f"steps_{tag}"] = len(errs) - 1
            steps = np.concatenate([[0], _log_spaced(len(errs) - 1) + 1])  # incl. the start
            (line,) = ax.semilogy(steps, gaps[steps], label=f"{name} (rate {rate:.4f})")
            ax.semilogy(
                steps, gaps[0] * theory ** (2 * steps), "--", color=line.get_color(), lw=0.8
            )
        ax.set_title(f"kappa = {kappa:g}  (dashed: theory rho^2k)")
        ax.set_xlabel("step")
        ax.set_ylabel("f(x) - f*")
        ax.set_xscale("symlog", linthresh=10)
        ax.legend(fontsize=8)
    ctx.savefig(fig, "gd_loss_curves.png")

    # divergence past eta = 2/L: the top eigen-direction grows by |1 - eta L| per step
    problem = make_quadratic(kappas[0], cfg["dim"], ctx.rng)
    fig, ax = plt.subplots(figsize=(6, 4))
    for factor in (1.9, 2.0, 2.1):
        iterates = heavy_ball(problem, np.zeros(cfg["dim"]), factor / problem.L, 0.0)
        errs, gaps = run_until(problem, iterates, max_steps=200)
        ax.semilogy(gaps, label=f"eta = {factor}/L")
        if factor == 2.1:
            growth, theory = measured_rate(errs), factor - 1.0
            metrics["diverge_growth"] = growth
            metrics["diverge_growth_theory"] = theory
            metrics["diverge_growth_rel_error"] = abs(growth - theory) / theory
    ax.set_title(f"kappa = {kappas[0]:g}: the step size limit 2/L")
    ax.set_xlabel("step")
    ax.set_ylabel("f(x) - f*")
    ax.legend()
    ctx.savefig(fig, "gd_divergence.png")
    _plot_contours(ctx, kappas[:2])

    metrics["rate_rel_error"] = max(gd_errors)
    metrics["momentum_rate_rel_error"] = max(hb_errors)
    return metrics


# ------------------------------------------------------------------ 2. linear regression


@dataclass(frozen=True)
class Standardizer:
    """``z = (x - mean) / std`` per column, and the map of coefficients back to raw units."""

    mean: np.ndarray  # (d,)
    std: np.ndarray  # (d,)

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        std = X.std(axis=0)
        if np.any(std == 0):
            raise ValueError(f"constant feature column(s) {np.flatnonzero(std == 0).tolist()}")
        return cls(X.mean(axis=0), std)

    def design(self, X: np.ndarray) -> np.ndarray:
        """``[1, (X - mean) / std]``: the standardized design with an intercept column."""
        return np.column_stack([np.ones(len(X)), (X - self.mean) / self.std])

    def to_raw(self, w: np.ndarray) -> np.ndarray:
        """Coefficients on ``[1, z]`` -> coefficients on ``[1, x]`` (same predictions)."""
        slopes = w[1:] / self.std
        return np.concatenate([[w[0] - slopes @ self.mean], slopes])


class _LeastSquares:
    """``1/(2n) ||Xw - y||^2`` through its Gram matrix, with the exact optimality gap."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        n = len(y)
        self.gram, self.moment = X.T @ X / n, X.T @ y / n  # (d, d), (d,)
        self.w_star = np.linalg.lstsq(X, y)[0]  # the reference optimum, to measure progress
        self.L = float(np.linalg.eigvalsh(self.gram)[-1])

    def gap(self, w: np.ndarray) -> float:
        """``loss(w) - loss(w*) = 1/2 e^T (X^T X / n) e``, ``e = w - w*`` (no cancellation)."""
        e = w - self.w_star
        return 0.5 * float(e @ self.gram @ e)


def gd_least_squares(
    X: np.ndarray, y: np.ndarray, steps: int, tol: float = 0.0
) -> tuple[np.ndarray, list[float]]:
    """Full-batch GD on ``1/(2n) ||Xw - y||^2`` with step ``1/L``, ``L = lambda_max(X^T X / n)``.

    Returns the weights and the optimality gap after each step; stops early once
    ``||w - w*|| <= tol ||w*||``. The Gram matrix is formed once: a step then costs O(d^2).
    """
    problem = _LeastSquares(X, y)
    w = np.zeros(X.shape[1])
    gaps = []
    for _ in range(steps):
        w -= (problem.gram @ w - problem.moment) / problem.L
        gaps.append(problem.gap(w))
        if np.linalg.norm(w - problem.w_star) <= tol * np.linalg.norm(problem.w_star):
            break
    return w, gaps


def sgd_least_squares(
    X: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
    average_from: float = 0.2,
) -> tuple[np.ndarray, list[float]]:
    """Mini-batch SGD (reshuffled each epoch, constant step) with Polyak-Ruppert averaging.

    The last iterate keeps jittering around the optimum with a spread ~ lr * noise; the running
    average of the iterates after ``average_from * epochs`` converges to it. Returns the averaged
    weights and the optimality gap of the average (of the iterate before averaging starts)
    after each epoch.
    """
    problem = _LeastSquares(X, y)
    n, d = X.shape
    w, avg, count = np.zeros(d), np.zeros(d), 0
    gaps = []
    for epoch in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            Xb = X[idx]  # (B, d)
            w -= lr * Xb.T @ (Xb @ w - y[idx]) / len(idx)
            if epoch >= average_from * epochs:
                count += 1
                avg += (w - avg) / count
        gaps.append(problem.gap(avg if count else w))
    return (avg if count else w), gaps


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
    solutions = {
        "normal_eq": lstsq_normal_equations(design, y),
        "qr": lstsq_qr(design, y),
        "svd": lstsq_svd(design, y),
        "gd": scaler.to_raw(w_gd),
        "sgd": scaler.to_raw(w_sgd),
    }
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
        for key, solver in (
            ("normal_eq", lstsq_normal_equations),
            ("qr", lstsq_qr),
            ("svd", lstsq_svd),
        ):
            with np.errstate(all="ignore"):
                try:
                    err = float(np.max(np.abs(solver(X, y) - w_true)))
                except np.linalg.LinAlgError:  # X^T X numerically singular
                    err = math.inf
            out[key].append(err)
    return out


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
        "batch_size": 32,
        "sgd_lr": 0.1,
        "synthetic_n": 10_000,
        "synthetic_d": 50,
        "noise": 0.1,
        "degrees": list(range(1, 15)),
        "ill_degree": 9,
        "n_points": 1_000,
    },
    headline=["max_coef_diff", "ill_normal_eq_error", "ill_qr_error"],
)
def linear_regression(ctx: RunContext) -> dict[str, float]:
    """Least squares five ways on real and synthetic data; normal equations vs QR digits."""
    import matplotlib.pyplot as plt

    cfg = ctx.config
    metrics: dict[str, float] = {}
    X_diab, y_diab = load_diabetes()  # bundled with scikit-learn: (442, 10)
    n, d = cfg["synthetic_n"], cfg["synthetic_d"]
    X_syn = ctx.rng.standard_normal((n, d)) * np.linspace(0.5, 2.0, d) + 1.0
    w_true = ctx.rng.standard_normal(d + 1)  # intercept first
    y_syn = w_true[0] + X_syn @ w_true[1:] + cfg["noise"] * ctx.rng.standard_normal(n)

    curves, coefs = {}, {}
    cases = {"diabetes": (X_diab, y_diab), "synthetic": (X_syn, y_syn)}
    for name in ctx.progress(cases, desc="regression"):
        case_metrics, curves[name], w_ref, coefs[name] = _regression_case(ctx, name, *cases[name])
        metrics.update(case_metrics)
        if name == "synthetic":
            metrics["synthetic_weight_error"] = float(np.max(np.abs(w_ref - w_true)))
    iterative = [k for k in metrics if k.endswith(("_gd_coef_diff", "_sgd_coef_diff"))]
    analytic = [
        k
        for k in metrics
        if k.endswith(("_normal_eq_coef_diff", "_qr_coef_diff", "_svd_coef_diff"))
    ]
    metrics["max_coef_diff"] = max(metrics[k] for k in iterative)
    metrics["max_analytic_coef_diff"] = max(metrics[k] for k in analytic)

    ill = _ill_conditioned(cfg["degrees"], cfg["n_points"])
    i = cfg["degrees"].index(cfg["ill_degree"])
    metrics["ill_kappa"] = ill["kappa"][i]
    for key in ("normal_eq", "qr", "svd"):
        metrics[f"ill_{key}_error"] = ill[key][i]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, cases, strict=True):
        for method, gaps in curves[name].items():
            unit = "step" if method == "gd" else "epoch"
            shown = _log_spaced(len(gaps))
            ax.loglog(shown + 1, np.array(gaps)[shown], label=f"{method} (per {unit})")
        ax.set_title(f"{name}: loss - optimum (averaged iterate for SGD)")
        ax.legend()
    ctx.savefig(fig, "regression_loss_curves.png")

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.15
    ref = np.linalg.lstsq(np.column_stack([np.ones(len(X_diab)), X_diab]), y_diab)[0]
    ax.bar(np.arange(len(ref)) - 2.5 * width, ref, width, label="numpy lstsq", color="k")
    for j, (method, w) in enumerate(coefs["diabetes"].items()):
        ax.bar(np.arange(len(ref)) + (j - 1.5) * width, w, width, label=method)
    ax.set_xticks(np.arange(len(ref)), ["bias", *DIABETES_FEATURES])
    ax.set_title("diabetes: coefficients from every solver")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "regression_coefficients.png")

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
    return metrics


# ------------------------------------------------------------------ 3. variance propagation

INITS = ("naive", "small", "xavier", "he")
ACTIVATIONS = ("tanh", "relu")


def init_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """The weight standard deviation of an initialisation scheme."""
    stds = {
        "naive": 1.0,  # N(0, 1)
        "small": 0.01,
        "xavier": math.sqrt(2.0 / (fan_in + fan_out)),  # Glorot & Bengio (2010)
        "he": math.sqrt(2.0 / fan_in),  # He et al. (2015)
    }
    if scheme not in stds:
        raise ValueError(f"unknown init {scheme!r}; expected one of {list(stds)}")
    return stds[scheme]


def propagate(
    depth: int, width: int, batch: int, scheme: str, activation: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Std of the activations after each layer (forward) and of ``dL/dh`` at each layer's input
    (backward) in a bias-free MLP ``h_l = phi(h_{l-1} W_l)`` fed N(0, 1) inputs, backpropagating
    an N(0, 1) upstream gradient. float64, so even 1e±50 stays representable. Shapes (depth,).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    std = init_std(scheme, width, width)
    weights = [rng.standard_normal((width, width)) * std for _ in range(depth)]
    h = rng.standard_normal((batch, width))  # (B, W)
    pre_acts, forward = [], []
    for W in weights:
        z = h @ W  # (B, W)
        h = np.tanh(z) if activation == "tanh" else np.maximum(z, 0.0)
        pre_acts.append(z)
        forward.append(h.std())
    grad = rng.standard_normal((batch, width))  # dL/dh_depth
    backward = []
    for W, z in zip(reversed(weights), reversed(pre_acts), strict=True):
        local = 1.0 - np.tanh(z) ** 2 if activation == "tanh" else (z > 0).astype(z.dtype)
        grad = (grad * local) @ W.T  # dL/dh_{l-1}
        backward.append(grad.std())
    return np.array(forward), np.array(backward[::-1])


@deliverable(
    quick={"depth": 50, "width": 256, "batch": 512, "tol": 1e-6, "max_steps": 100_000},
    full={"depth": 50, "width": 512, "batch": 1024, "tol": 1e-6, "max_steps": 2_000_000},
    headline=["he_relu_std_ratio", "kappa_gram_raw", "kappa_gram_standardized"],
)
def variance_propagation(ctx: RunContext) -> dict[str, float]:
    """Activation/gradient std through a deep MLP per init; standardisation vs kappa and GD."""
    import matplotlib.pyplot as plt

    cfg = ctx.config
    metrics: dict[str, float] = {}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    runs = [(s, a) for a in ACTIVATIONS for s in INITS]
    for scheme, act in ctx.progress(runs, desc="init x activation"):
        fwd, bwd = propagate(cfg["depth"], cfg["width"], cfg["batch"], scheme, act, ctx.rng)
        metrics[f"{scheme}_{act}_std_ratio"] = float(fwd[-1] / fwd[0])
        metrics[f"{scheme}_{act}_grad_std_ratio"] = float(bwd[0] / bwd[-1])
        col = ACTIVATIONS.index(act)
        layers = np.arange(1, cfg["depth"] + 1)
        axes[0, col].semilogy(layers, fwd, label=scheme)
        axes[1, col].semilogy(layers, bwd, label=scheme)
    for col, act in enumerate(ACTIVATIONS):
        axes[0, col].set_title(f"{act}: activation std after layer l")
        axes[1, col].set_title(f"{act}: gradient std dL/dh at layer l's input")
        axes[1, col].set_xlabel("layer")
        axes[0, col].legend()
    ctx.savefig(fig, "variance_by_layer.png")

    # standardising inputs: raw diabetes features (years, mg/dL, ...) against z-scores
    X_raw, y = load_diabetes(scaled=False)
    raw = np.column_stack([np.ones(len(X_raw)), X_raw])
    standardized = Standardizer.fit(X_raw).design(X_raw)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, X in (("raw", raw), ("standardized", standardized)):
        kappa_gram = condition_number(X.T @ X)
        _, gaps = gd_least_squares(X, y, cfg["max_steps"], tol=cfg["tol"])
        steps = len(gaps)
        metrics[f"kappa_gram_{name}"] = kappa_gram
        metrics[f"gd_steps_{name}"] = steps
        metrics[f"gd_converged_{name}"] = int(steps < cfg["max_steps"])
        # theory: the slowest direction contracts by 1 - 1/kappa per step
        metrics[f"gd_steps_theory_{name}"] = kappa_gram * math.log(1.0 / cfg["tol"])
        shown = _log_spaced(steps)
        ax.loglog(shown + 1, np.array(gaps)[shown], label=f"{name} (kappa {kappa_gram:.3g})")
    # a lower bound when the raw run hit max_steps (gd_converged_raw == 0)
    metrics["standardize_step_ratio"] = metrics["gd_steps_raw"] / metrics["gd_steps_standardized"]
    ax.set_xlabel("GD step (eta = 1/L)")
    ax.set_ylabel("loss - optimum")
    ax.set_title("diabetes regression: raw vs standardized features")
    ax.legend()
    ctx.savefig(fig, "standardization_gd.png")
    return metrics
