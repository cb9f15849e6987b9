"""GD on quadratics, heavy ball and least squares by iteration, against closed forms, numpy's
eigenvalues and lstsq, and scikit-learn's StandardScaler."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from layer0_math.optimization import (
    LeastSquares,
    Standardizer,
    gd_least_squares,
    gd_methods,
    heavy_ball,
    make_quadratic,
    measured_rate,
    run_until,
    sgd_least_squares,
)


def test_make_quadratic_spectrum_and_minimiser():
    q = make_quadratic(50.0, 6, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.eigvalsh(q.A), np.linspace(1, 50, 6), atol=1e-12)
    np.testing.assert_allclose(q.x_star, np.linalg.solve(q.A, q.b), atol=1e-12)
    assert q.gap(q.x_star) == 0.0
    x = np.random.default_rng(1).standard_normal(6)
    f = lambda v: 0.5 * v @ q.A @ v - q.b @ v
    assert q.gap(x) == pytest.approx(f(x) - f(q.x_star), rel=1e-10)
    with pytest.raises(ValueError, match="dim=1"):
        make_quadratic(10.0, 1, np.random.default_rng(0))


def test_gd_error_follows_the_eigen_decomposition():
    # e_k = (I - eta A)^k e_0 exactly: compare the iterates with the matrix power
    q = make_quadratic(20.0, 5, np.random.default_rng(1))
    x0 = np.zeros(5)
    eta = 1.0 / q.L
    xs = list(itertools.islice(heavy_ball(q, x0, eta, 0.0), 31))
    M = np.linalg.matrix_power(np.eye(5) - eta * q.A, 30)
    np.testing.assert_allclose(xs[30] - q.x_star, M @ (x0 - q.x_star), atol=1e-12)


@pytest.mark.parametrize("kappa", [4.0, 100.0, 1e4])
def test_theory_rates_are_the_spectral_radius_of_the_iteration(kappa):
    # independent of the formulas: numpy's eigenvalues of each method's iteration matrix
    q = make_quadratic(kappa, 8, np.random.default_rng(2))
    eye, zero = np.eye(8), np.zeros((8, 8))
    for name, (eta, beta, rate) in gd_methods(q.mu, q.L).items():
        # heavy ball on (e_k, e_{k-1}): e_{k+1} = ((1 + beta) I - eta A) e_k - beta e_{k-1}
        T = np.block([[(1 + beta) * eye - eta * q.A, -beta * eye], [eye, zero]])
        radius = np.max(np.abs(np.linalg.eigvals(T)))
        assert radius == pytest.approx(rate, rel=1e-6), name
    with pytest.raises(ValueError, match="mu=0"):
        gd_methods(0.0, 1.0)


def test_measured_rate_of_a_geometric_sequence():
    errs = 3.0 * 0.7 ** np.arange(40) + 1e-9 * 0.2 ** np.arange(40)
    assert measured_rate(errs) == pytest.approx(0.7, rel=1e-12)
    with pytest.raises(ValueError, match="2 steps"):
        measured_rate(np.ones(2))


def test_run_until_stops_at_the_tolerance_and_on_divergence():
    q = make_quadratic(10.0, 4, np.random.default_rng(3))
    x0 = np.zeros(4)
    errs, gaps = run_until(q, heavy_ball(q, x0, 1.0 / q.L, 0.0), 10_000, tol=1e-6)
    assert errs[-1] <= 1e-6 * errs[0] < errs[-2]
    assert len(gaps) == len(errs)
    errs, _ = run_until(q, heavy_ball(q, x0, 2.5 / q.L, 0.0), 10_000)
    assert errs[-1] >= 1e12 * errs[0] and len(errs) < 10_000  # |1 - 2.5| = 1.5 per step
    errs, _ = run_until(q, heavy_ball(q, x0, 1.0 / q.L, 0.0), 7)
    assert len(errs) == 8  # x_0 .. x_7


def _regression(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 3))])
    return X, X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.3 * rng.standard_normal(n)


def test_least_squares_gap_is_the_loss_above_the_optimum():
    X, y = _regression(4)
    problem = LeastSquares(X, y)
    w_star = np.linalg.lstsq(X, y)[0]
    loss = lambda w: np.sum((X @ w - y) ** 2) / (2 * len(y))
    w = w_star + np.random.default_rng(5).standard_normal(4)
    assert problem.gap(w) == pytest.approx(loss(w) - loss(w_star), rel=1e-10)
    assert problem.L == pytest.approx(np.linalg.eigvalsh(X.T @ X / len(y))[-1], rel=1e-12)


def test_gd_least_squares_reaches_lstsq_within_the_theory_step_count():
    X, y = _regression(6)
    w, gaps = gd_least_squares(X, y, steps=100_000, tol=1e-10)
    w_star = np.linalg.lstsq(X, y)[0]
    assert np.linalg.norm(w - w_star) <= 1e-10 * np.linalg.norm(w_star)
    kappa = np.linalg.cond(X.T @ X)  # the slowest direction contracts by 1 - 1/kappa per step
    assert len(gaps) <= kappa * np.log(1e10) + 1
    assert all(b <= a for a, b in itertools.pairwise(gaps))  # eta = 1/L: monotone descent


def test_sgd_with_averaging_reaches_lstsq():
    X, y = _regression(3)
    w, gaps = sgd_least_squares(X, y, 300, 16, 0.1, np.random.default_rng(4))
    np.testing.assert_allclose(w, np.linalg.lstsq(X, y)[0], atol=2e-3)
    assert gaps[-1] < 1e-3 * gaps[0]


def test_standardizer_matches_sklearn_and_keeps_predictions():
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 3)) * [1, 100, 0.01] + [5, -3, 1]
    scaler = Standardizer.fit(X)
    np.testing.assert_allclose(scaler.transform(X), StandardScaler().fit_transform(X), atol=1e-12)
    w = rng.standard_normal(4)
    raw = scaler.to_raw(w)
    np.testing.assert_allclose(scaler.design(X) @ w, np.column_stack([np.ones(30), X]) @ raw)
    with pytest.raises(ValueError, match=r"constant feature column\(s\) \[1\]"):
        Standardizer.fit(np.column_stack([X[:, 0], np.ones(30)]))


def test_standardizing_shrinks_the_condition_number():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((100, 3)) * [1, 1000, 0.001] + [50, 0, 0]
    raw = np.column_stack([np.ones(100), X])
    standardized = Standardizer.fit(X).design(X)
    assert np.linalg.cond(standardized) < 10 < 1e6 < np.linalg.cond(raw)
