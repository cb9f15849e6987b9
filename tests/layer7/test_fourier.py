"""The Fourier reading of an embedding: the DFT basis equals numpy.fft and is orthonormal, the
per-frequency norms obey Parseval and agree with projections on the real cos/sin basis, and a
planted wave cos(2πkx/p) is found at frequency k."""

from __future__ import annotations

import numpy as np
import pytest

from layer7_research.grokking import (
    dft_matrix,
    fourier_basis,
    frequency_norms,
    key_frequencies,
    spectrum,
    top_fraction,
)

PRIMES = [5, 11, 97, 113]


@pytest.mark.parametrize("p", PRIMES)
def test_dft_matrix_is_numpy_fft_and_unitary(p):
    f = dft_matrix(p)
    np.testing.assert_allclose(f, np.fft.fft(np.eye(p), axis=0) / np.sqrt(p), atol=1e-12)
    np.testing.assert_allclose(f @ f.conj().T, np.eye(p), atol=1e-12)


@pytest.mark.parametrize("p", PRIMES)
def test_real_basis_is_orthonormal_and_is_the_dft_split_into_cos_and_sin(p):
    b = fourier_basis(p)
    np.testing.assert_allclose(b @ b.T, np.eye(p), atol=1e-12)
    f = dft_matrix(p)
    k = np.arange(1, (p - 1) // 2 + 1)
    np.testing.assert_allclose(b[2 * k - 1], np.sqrt(2) * f[k].real, atol=1e-12)
    np.testing.assert_allclose(b[2 * k], -np.sqrt(2) * f[k].imag, atol=1e-12)


def test_spectrum_is_numpy_fft_over_the_token_axis():
    w = np.random.default_rng(0).normal(size=(97, 16))
    np.testing.assert_allclose(spectrum(w), np.fft.fft(w, axis=0, norm="ortho"), atol=1e-10)


@pytest.mark.parametrize("p", [11, 113])
def test_frequency_norms_obey_parseval_and_match_real_projections(p):
    w = np.random.default_rng(p).normal(size=(p, 24))
    norms = frequency_norms(w)
    assert norms.shape == ((p + 1) // 2,)
    np.testing.assert_allclose((norms**2).sum(), (w**2).sum(), rtol=1e-10)
    coef = fourier_basis(p) @ w  # (p, d) coefficients on the real basis
    by_freq = [np.linalg.norm(coef[0])] + [
        np.linalg.norm(coef[2 * k - 1 : 2 * k + 1]) for k in range(1, (p + 1) // 2)
    ]
    np.testing.assert_allclose(norms, by_freq, rtol=1e-10)


@pytest.mark.parametrize(("p", "k"), [(97, 14), (113, 41), (113, 56), (11, 1)])
def test_a_planted_wave_is_found_at_its_frequency(p, k):
    x = np.arange(p)[:, None]
    phase = np.random.default_rng(k).uniform(0, 2 * np.pi, size=(1, 8))
    w = np.cos(2 * np.pi * k * x / p + phase)  # (p, 8): frequency k in every column
    w = w + 0.05 * np.random.default_rng(0).normal(size=w.shape)
    norms = frequency_norms(w)
    assert key_frequencies(norms, 1) == [k]
    assert top_fraction(norms, [k]) > 0.95


def test_two_planted_frequencies_in_order_of_strength():
    p, x = 113, np.arange(113)[:, None]
    w = np.hstack([3 * np.cos(2 * np.pi * 35 * x / p), np.sin(2 * np.pi * 14 * x / p)])
    norms = frequency_norms(w)
    assert key_frequencies(norms, 2) == [35, 14]
    np.testing.assert_allclose(top_fraction(norms, [35, 14]), 1.0, atol=1e-12)


def test_a_random_embedding_spreads_its_norm_evenly():
    p, k = 113, 5
    norms = frequency_norms(np.random.default_rng(1).normal(size=(p, 128)))
    share = top_fraction(norms, key_frequencies(norms, k))
    assert k / 56 < share < 2 * k / 56  # the largest 5 of 56 roughly equal shares


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: dft_matrix(10), "odd integer >= 3"),
        (lambda: spectrum(np.ones(7)), r"shape \(p, d\)"),
        (lambda: key_frequencies(np.ones(6), 6), r"k must be in \[1, 5\]"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
