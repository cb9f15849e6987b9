"""Norms, QR, the symmetric QR algorithm and least squares against numpy/scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layer0_math.linalg import (
    condition_number,
    eigh_qr,
    frobenius_norm,
    hessenberg,
    householder_qr,
    lstsq_normal_equations,
    lstsq_qr,
    lstsq_svd,
    power_iteration,
    singular_values,
    solve_upper_triangular,
    spectral_norm,
    vector_norm,
)

# moderate magnitudes: numpy's norms underflow near 1e-300 (ours rescale), so stay away from it
finite = st.one_of(st.just(0.0), st.floats(1e-6, 1e3), st.floats(-1e3, -1e-6))


def _sym(rng, n):
    B = rng.standard_normal((n, n))
    return B + B.T


@given(
    arrays(np.float64, st.integers(1, 20), elements=finite),
    st.sampled_from([1, 1.5, 2, 3, math.inf]),
)
def test_vector_norm_matches_numpy(x, p):
    assert vector_norm(x, p) == pytest.approx(np.linalg.norm(x, p), rel=1e-12, abs=1e-300)


def test_vector_norm_does_not_overflow_or_underflow():
    assert vector_norm(np.array([3e200, 4e200])) == pytest.approx(5e200, rel=1e-15)
    assert vector_norm(np.array([3e-200, 4e-200])) == pytest.approx(5e-200, rel=1e-15)


def test_vector_norm_rejects_non_norm_p():
    with pytest.raises(ValueError, match="p=0.5"):
        vector_norm(np.ones(3), 0.5)


@given(arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=finite))
def test_matrix_norms_match_numpy_and_their_inequalities(A):
    fro = frobenius_norm(A)
    spec = spectral_norm(A)
    assert fro == pytest.approx(np.linalg.norm(A, "fro"), rel=1e-12, abs=1e-300)
    assert spec == pytest.approx(np.linalg.norm(A, 2), rel=1e-6, abs=1e-9)
    rank = max(np.linalg.matrix_rank(A), 1)
    assert spec <= fro * (1 + 1e-9) + 1e-12
    assert fro <= math.sqrt(rank) * spec * (1 + 1e-6) + 1e-9


def test_spectral_norm_with_nearly_equal_top_singular_values():
    # sigma = 64.0078 and 64: power iteration contracts by 4096/4097 per step and has not
    # converged after 10 000 steps (found by hypothesis); the norm must still be right
    A = np.array([[-64.0, 1.0, 0.0, 0.0], [0.0, 0.0, -64.0, 0.0]])
    assert not power_iteration(A @ A.T, tol=1e-13).converged
    assert spectral_norm(A) == pytest.approx(np.linalg.norm(A, 2), rel=1e-12)


def test_power_iteration_finds_the_dominant_eigenpair():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    lam = np.array([-5.0, 3.0, 2.0, 1.0, 0.5, 0.1])  # dominant by magnitude is -5
    A = Q @ np.diag(lam) @ Q.T
    res = power_iteration(A, rng=np.random.default_rng(1))
    assert res.converged
    assert res.eigenvalue == pytest.approx(-5.0, rel=1e-10)
    assert abs(res.eigenvector @ Q[:, 0]) == pytest.approx(1.0, abs=1e-10)
    # convergence speed: error shrinks like |lambda_2 / lambda_1|^k = 0.6^k
    assert res.iterations < 3 * math.log(1e-12) / math.log(0.6)


@settings(max_examples=20)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31))
def test_householder_qr_matches_numpy(m, n, seed):
    A = np.random.default_rng(seed).standard_normal((m, n))
    Q, R = householder_qr(A)
    k = min(m, n)
    assert Q.shape == (m, k) and R.shape == (k, n)
    np.testing.assert_allclose(Q @ R, A, atol=1e-12)
    np.testing.assert_allclose(Q.T @ Q, np.eye(k), atol=1e-12)
    np.testing.assert_array_equal(R, np.triu(R))
    # QR is unique up to the signs of R's rows
    _, R_np = np.linalg.qr(A)
    np.testing.assert_allclose(np.abs(np.diag(R)), np.abs(np.diag(R_np)), atol=1e-12)


def test_hessenberg_matches_scipy():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((7, 7))
    H, Q = hessenberg(A)
    np.testing.assert_allclose(Q @ H @ Q.T, A, atol=1e-12)
    np.testing.assert_allclose(Q.T @ Q, np.eye(7), atol=1e-12)
    assert np.all(np.tril(H, -2) == 0)
    H_sp = scipy.linalg.hessenberg(A)
    np.testing.assert_allclose(np.abs(np.diag(H, -1)), np.abs(np.diag(H_sp, -1)), atol=1e-12)
    S = _sym(rng, 7)
    T, _ = hessenberg(S)
    np.testing.assert_allclose(np.triu(T, 2), 0, atol=1e-12)  # symmetric -> tridiagonal


@settings(max_examples=25)
@given(st.integers(1, 25), st.integers(0, 2**31))
def test_eigh_qr_matches_numpy_eigh(n, seed):
    A = _sym(np.random.default_rng(seed), n)
    w, V = eigh_qr(A)
    w_np, V_np = np.linalg.eigh(A)
    scale = np.linalg.norm(A, 2)
    np.testing.assert_allclose(w, w_np, atol=1e-12 * scale * n)
    np.testing.assert_allclose(V.T @ V, np.eye(n), atol=1e-12 * n)
    np.testing.assert_allclose(A @ V, V * w, atol=1e-12 * scale * n)
    # eigenvectors agree with numpy's up to sign (random eigenvalues are distinct)
    np.testing.assert_allclose(np.abs(np.sum(V * V_np, axis=0)), 1.0, atol=1e-8)


def test_eigh_qr_repeated_zero_and_degenerate_spectra():
    for A in (np.eye(4), np.zeros((3, 3)), np.array([[0.0, 1.0], [1.0, 0.0]]), np.ones((5, 5))):
        w, V = eigh_qr(A)
        np.testing.assert_allclose(w, np.linalg.eigh(A)[0], atol=1e-13)
        np.testing.assert_allclose(A @ V, V * w, atol=1e-13)


def test_eigh_qr_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        eigh_qr(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        eigh_qr(np.ones((2, 3)))


@pytest.mark.parametrize("degree", [3, 8, 12])
def test_singular_values_and_condition_number_match_numpy(degree):
    X = np.vander(np.linspace(0, 1, 40), degree + 1)  # kappa grows ~10x per degree
    kappa_np = np.linalg.cond(X)
    # without forming X^T X the relative error stays ~ eps * kappa, not eps * kappa^2
    assert condition_number(X) == pytest.approx(kappa_np, rel=max(1e-10, 1e-14 * kappa_np))
    s = singular_values(X)
    np.testing.assert_allclose(s, np.linalg.svd(X, compute_uv=False), rtol=1e-14 * kappa_np)
    np.testing.assert_allclose(singular_values(X.T), s, rtol=1e-14 * kappa_np)


def test_condition_number_of_singular_matrix_is_inf():
    assert condition_number(np.array([[1.0, 2.0], [2.0, 4.0]])) > 1e15


def test_solve_upper_triangular_matches_scipy():
    rng = np.random.default_rng(4)
    R = np.triu(rng.standard_normal((6, 6))) + 3 * np.eye(6)
    b = rng.standard_normal(6)
    np.testing.assert_allclose(
        solve_upper_triangular(R, b), scipy.linalg.solve_triangular(R, b), rtol=1e-12
    )
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        solve_upper_triangular(np.zeros((2, 2)), np.ones(2))


@pytest.mark.parametrize("solver", [lstsq_normal_equations, lstsq_qr, lstsq_svd])
def test_least_squares_solvers_match_numpy_lstsq(solver):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 6))
    y = rng.standard_normal(50)
    np.testing.assert_allclose(solver(X, y), np.linalg.lstsq(X, y)[0], atol=1e-12)
    Y = rng.standard_normal((50, 3))  # several right-hand sides at once
    np.testing.assert_allclose(solver(X, Y), np.linalg.lstsq(X, Y)[0], atol=1e-12)


def test_normal_equations_lose_twice_the_digits_of_qr():
    x = np.linspace(0, 1, 100)
    X = np.vander(x, 9)  # kappa ~ 1e6-1e7
    w_true = np.arange(1.0, 10.0)
    y = X @ w_true
    kappa = np.linalg.cond(X)
    err_ne = np.max(np.abs(lstsq_normal_equations(X, y) - w_true))
    err_qr = np.max(np.abs(lstsq_qr(X, y) - w_true))
    eps = np.finfo(float).eps
    assert err_qr < 100 * kappa * eps * np.max(np.abs(w_true))
    assert err_ne > 100 * err_qr


def test_lstsq_shape_errors():
    with pytest.raises(ValueError, match="rows"):
        lstsq_qr(np.ones((5, 2)), np.ones(4))
    with pytest.raises(ValueError, match="tall"):
        lstsq_qr(np.ones((2, 5)), np.ones(2))
