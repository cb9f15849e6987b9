"""Layer 0's deliverables run small and meet their targets; their building blocks vs references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from layer0_math import deliverables
from layer0_math.lab import run_deliverable


def test_gd_quadratic_rates_match_theory(tmp_path):
    m = run_deliverable(
        deliverables.gd_quadratic,
        overrides={"dim": 10, "tol": 1e-8, "max_steps": 50_000},
        runs_dir=tmp_path,
    )
    assert m["rate_rel_error"] < 0.05
    # stricter: the per-step *decrease* 1 - rho (the speed) matches too, for every case
    for kappa in (10, 100, 1000):
        for method in ("gd_1_over_L", "gd_optimal"):
            measured = 1 - m[f"rate_{method}_kappa{kappa}"]
            theory = 1 - m[f"theory_{method}_kappa{kappa}"]
            assert abs(measured - theory) / theory < 0.01, (kappa, method, measured, theory)
    # heavy ball: sqrt(kappa) instead of kappa (a k*rho^k transient biases the estimate up)
    assert m["momentum_rate_rel_error"] < 0.1
    assert m["steps_heavy_ball_kappa1000"] < m["steps_gd_optimal_kappa1000"] / 10
    assert m["diverge_growth"] == pytest.approx(1.1, rel=1e-6)
    run = next((tmp_path / "layer0_math" / "gd_quadratic").glob("2*"))
    for png in ("gd_contours_2d.png", "gd_loss_curves.png", "gd_divergence.png"):
        assert (run / png).stat().st_size > 1000


@pytest.mark.slow
def test_linear_regression_solvers_agree(tmp_path):
    m = run_deliverable(
        deliverables.linear_regression,
        overrides={"synthetic_n": 400, "synthetic_d": 8},
        runs_dir=tmp_path,
    )
    assert m["max_analytic_coef_diff"] < 1e-10
    assert m["max_coef_diff"] < 1e-2
    assert m["diabetes_gd_coef_diff"] < 1e-8 and m["synthetic_gd_coef_diff"] < 1e-8
    # lstsq recovers the known weights to about noise * sqrt(d / n)
    assert m["synthetic_weight_error"] < 0.05
    # the ill-conditioned Vandermonde case: normal equations lose digits QR keeps
    assert m["ill_kappa"] > 1e6
    assert m["ill_normal_eq_error"] > 100 * m["ill_qr_error"]
    assert m["ill_qr_error"] < 1e-8
    assert m["diabetes_kappa_standardized"] < m["diabetes_kappa_design"] / 5


@pytest.mark.slow
def test_variance_propagation_he_relu_keeps_the_scale(tmp_path):
    # the quick preset's width 256: at width 128 finite-width fluctuations alone
    # move the 50-layer ratio outside [0.5, 2] for some seeds
    m = run_deliverable(
        deliverables.variance_propagation, overrides={"max_steps": 20_000}, runs_dir=tmp_path
    )
    assert 0.5 <= m["he_relu_std_ratio"] <= 2.0
    assert 0.5 <= m["he_relu_grad_std_ratio"] <= 2.0
    assert m["naive_relu_std_ratio"] > 1e20 and m["small_relu_std_ratio"] < 1e-20
    assert m["small_tanh_grad_std_ratio"] < 1e-20
    assert m["xavier_relu_std_ratio"] < 1e-3  # Xavier halves ReLU's variance per layer
    # standardising: kappa of X^T X drops by orders of magnitude, GD needs far fewer steps
    assert m["kappa_gram_raw"] > 1e4 * m["kappa_gram_standardized"]
    assert m["gd_converged_standardized"] == 1
    assert m["gd_steps_standardized"] <= m["gd_steps_theory_standardized"]
    assert m["gd_steps_raw"] > 3 * m["gd_steps_standardized"]


def test_make_quadratic_spectrum_and_minimiser():
    q = deliverables.make_quadratic(50.0, 6, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.eigvalsh(q.A), np.linspace(1, 50, 6), atol=1e-12)
    np.testing.assert_allclose(q.x_star, np.linalg.solve(q.A, q.b), atol=1e-12)
    assert q.gap(q.x_star) == 0.0
    with pytest.raises(ValueError, match="dim=1"):
        deliverables.make_quadratic(10.0, 1, np.random.default_rng(0))


def test_gd_error_follows_the_eigen_decomposition():
    # e_k = (I - eta A)^k e_0 exactly: compare the iterates with the matrix power
    q = deliverables.make_quadratic(20.0, 5, np.random.default_rng(1))
    x0 = np.zeros(5)
    eta = 1.0 / q.L
    xs = list(itertools.islice(deliverables.heavy_ball(q, x0, eta, 0.0), 31))
    M = np.linalg.matrix_power(np.eye(5) - eta * q.A, 30)
    np.testing.assert_allclose(xs[30] - q.x_star, M @ (x0 - q.x_star), atol=1e-12)


def test_measured_rate_of_a_geometric_sequence():
    errs = 3.0 * 0.7 ** np.arange(40) + 1e-9 * 0.2 ** np.arange(40)
    assert deliverables.measured_rate(errs) == pytest.approx(0.7, rel=1e-12)
    with pytest.raises(ValueError, match="2 steps"):
        deliverables.measured_rate(np.ones(2))


def test_standardizer_keeps_predictions():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 3)) * [1, 100, 0.01] + [5, -3, 1]
    scaler = deliverables.Standardizer.fit(X)
    w = rng.standard_normal(4)
    raw = scaler.to_raw(w)
    np.testing.assert_allclose(scaler.design(X) @ w, np.column_stack([np.ones(30), X]) @ raw)
    with pytest.raises(ValueError, match="constant"):
        deliverables.Standardizer.fit(np.ones((4, 2)))


def test_sgd_with_averaging_reaches_lstsq():
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(200), rng.standard_normal((200, 3))])
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.3 * rng.standard_normal(200)
    w, gaps = deliverables.sgd_least_squares(X, y, 300, 16, 0.1, np.random.default_rng(4))
    np.testing.assert_allclose(w, np.linalg.lstsq(X, y)[0], atol=2e-3)
    assert gaps[-1] < 1e-3 * gaps[0]


def test_propagate_matches_the_variance_recursion_for_linear_tanh_regime():
    # small weights keep tanh in its linear regime: std shrinks by sqrt(width) * sigma per layer
    fwd, _ = deliverables.propagate(5, 200, 400, "small", "tanh", np.random.default_rng(5))
    factor = np.sqrt(200) * 0.01
    np.testing.assert_allclose(fwd[1:] / fwd[:-1], factor, rtol=0.05)
    with pytest.raises(ValueError, match="gelu"):
        deliverables.propagate(2, 4, 4, "he", "gelu", np.random.default_rng(0))
    with pytest.raises(ValueError, match="lecun"):
        deliverables.init_std("lecun", 4, 4)
