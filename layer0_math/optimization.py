"""Gradient descent seen through linear algebra: quadratics, momentum, and least squares.

**GD on a quadratic.** For ``f(x) = 1/2 x^T A x - b^T x`` (A symmetric, eigenvalues in
``[mu, L]``, condition number ``kappa = L/mu``) the gradient is ``A x - b`` and the minimiser
``x* = A^-1 b``. The error ``e_k = x_k - x*`` of ``x_{k+1} = x_k - eta grad f(x_k)`` obeys

    e_{k+1} = (I - eta A) e_k,

so along the eigenvector of ``lambda_i`` it shrinks by ``|1 - eta lambda_i|`` per step and the
worst case is ``rho(eta) = max(|1 - eta mu|, |1 - eta L|)``:

    eta = 1/L          -> rho = 1 - 1/kappa,
    eta = 2/(mu + L)   -> rho = (kappa - 1)/(kappa + 1)   (the best fixed step),
    eta > 2/L          -> |1 - eta L| > 1: divergence.

**Heavy ball** (Polyak 1964) ``x_{k+1} = x_k - eta grad f(x_k) + beta (x_k - x_{k-1})`` with
``eta = 4/(sqrt(L) + sqrt(mu))^2`` and ``beta = ((sqrt(kappa) - 1)/(sqrt(kappa) + 1))^2``
contracts at ``(sqrt(kappa) - 1)/(sqrt(kappa) + 1)``: kappa is replaced by its square root.
:func:`gd_methods` tabulates the three (eta, beta, rate) triples; :func:`measured_rate` reads the
rate off a run.

**Least squares by iteration.** ``loss(w) = 1/(2n) ||Xw - y||^2`` is a quadratic with
``A = X^T X / n``, so full-batch GD with ``eta = 1/L``, ``L = lambda_max(X^T X / n)``, needs about
``kappa(X^T X) log(1/tol)`` steps. Mini-batch SGD with a constant step jitters around the optimum
(spread ~ eta * gradient noise); the running (Polyak-Ruppert) average of its iterates converges.

**Standardising** the features, ``z = (x - mean) / std`` per column, is the cheapest
preconditioner: it equalises the column scales and so shrinks ``kappa(X^T X)`` (by orders of
magnitude for raw units such as years and mg/dL), and with it the number of GD steps.
:class:`Standardizer` maps the coefficients back to raw units with the same predictions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from layer0_math.linalg import householder_qr

__all__ = [
    "Quadratic",
    "make_quadratic",
    "heavy_ball",
    "run_until",
    "measured_rate",
    "gd_methods",
    "LeastSquares",
    "gd_least_squares",
    "sgd_least_squares",
    "Standardizer",
]


# ----------------------------------------------------------------------------- quadratics


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


def gd_methods(mu: float, L: float) -> dict[str, tuple[float, float, float]]:
    """name -> (eta, beta, theoretical rate) for GD with 1/L, GD with 2/(mu+L), heavy ball."""
    if not 0 < mu <= L:
        raise ValueError(f"need 0 < mu <= L, got mu={mu}, L={L}")
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


# ----------------------------------------------------------------------------- least squares


class LeastSquares:
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
    problem = LeastSquares(X, y)
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
    problem = LeastSquares(X, y)
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

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / std``: the standardized features."""
        return (X - self.mean) / self.std

    def design(self, X: np.ndarray) -> np.ndarray:
        """``[1, (X - mean) / std]``: the standardized design with an intercept column."""
        return np.column_stack([np.ones(len(X)), self.transform(X)])

    def to_raw(self, w: np.ndarray) -> np.ndarray:
        """Coefficients on ``[1, z]`` -> coefficients on ``[1, x]`` (same predictions)."""
        slopes = w[1:] / self.std
        return np.concatenate([[w[0] - slopes @ self.mean], slopes])
