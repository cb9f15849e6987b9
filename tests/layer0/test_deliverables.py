"""Layer 0's deliverables run small and meet their targets (their library code is tested in
test_optimization.py and test_initialization.py)."""

from __future__ import annotations

import importlib

import pytest

from layer0_math import deliverables
from layer0_math.lab import deliverables_of, run_deliverable, spec_of


def test_the_package_lists_one_module_per_deliverable_in_run_order():
    names = [spec_of(fn).name for fn in deliverables_of(deliverables)]
    assert names == ["gd_quadratic", "linear_regression", "variance_propagation"]
    for name in names:  # each deliverable lives in the module named for it
        module = importlib.import_module(f"layer0_math.deliverables.{name}")
        assert getattr(module, name) is getattr(deliverables, name)


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
