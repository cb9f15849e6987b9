"""Samplers vs scipy.stats; estimators and the Beta-Binomial update vs closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from layer0_math.probability import (
    BetaPosterior,
    beta_binomial_update,
    box_muller,
    gaussian_log_likelihood,
    gaussian_mle,
    inverse_cdf_sample,
    monte_carlo_expectation,
    sample_categorical,
    sample_exponential,
)

ALPHA = 1e-3  # significance for goodness-of-fit tests (fixed seeds: deterministic outcomes)


def test_inverse_cdf_exponential_passes_ks_test():
    x = sample_exponential(2.5, 20_000, np.random.default_rng(0))
    assert scipy.stats.kstest(x, scipy.stats.expon(scale=1 / 2.5).cdf).pvalue > ALPHA
    assert x.mean() == pytest.approx(1 / 2.5, rel=0.03)


def test_inverse_cdf_generic_with_scipy_ppf():
    dist = scipy.stats.gamma(a=3.0)
    x = inverse_cdf_sample(dist.ppf, 5_000, np.random.default_rng(1))
    assert scipy.stats.kstest(x, dist.cdf).pvalue > ALPHA


def test_box_muller_is_standard_normal():
    z = box_muller(20_001, np.random.default_rng(2))
    assert z.shape == (20_001,)
    assert scipy.stats.kstest(z, scipy.stats.norm.cdf).pvalue > ALPHA
    # the pairs are uncorrelated
    pairs = box_muller(20_000, np.random.default_rng(3)).reshape(2, -1)
    assert abs(np.corrcoef(pairs)[0, 1]) < 4 / math.sqrt(10_000)


def test_categorical_frequencies_pass_chi_square():
    p = np.array([0.5, 0.2, 0.0, 0.25, 0.05])
    k = sample_categorical(p, 50_000, np.random.default_rng(4))
    counts = np.bincount(k, minlength=p.size)
    assert counts[2] == 0  # a zero-probability class is never drawn
    nz = p > 0
    stat = scipy.stats.chisquare(counts[nz], 50_000 * p[nz])
    assert stat.pvalue > ALPHA


def test_categorical_bad_probs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sum to 1"):
        sample_categorical(np.array([0.5, 0.6]), 3, rng)
    with pytest.raises(ValueError, match="non-negative"):
        sample_categorical(np.array([1.5, -0.5]), 3, rng)


def test_monte_carlo_estimate_and_its_standard_error():
    rng = np.random.default_rng(5)
    # E[Z^4] = 3 for a standard normal, Var[Z^4] = 105 - 9 = 96
    est = monte_carlo_expectation(lambda z: z**4, box_muller, 40_000, rng)
    assert est.stderr == pytest.approx(math.sqrt(96 / 40_000), rel=0.15)
    assert abs(est.mean - 3.0) < 4 * est.stderr


def test_monte_carlo_intervals_cover_the_truth_about_95_percent():
    rng = np.random.default_rng(6)
    hits = 0
    for _ in range(400):
        est = monte_carlo_expectation(lambda u: np.exp(u), lambda n, r: r.random(n), 200, rng)
        lo, hi = est.interval()
        hits += lo <= math.e - 1 <= hi
    # binomial(400, 0.95): mean 380, std 4.4
    assert 362 <= hits <= 396


def test_gaussian_mle_matches_scipy_fit_and_maximises_the_likelihood():
    x = np.random.default_rng(7).normal(1.5, 2.0, size=500)
    mu, var = gaussian_mle(x)
    loc, scale = scipy.stats.norm.fit(x)
    assert mu == pytest.approx(loc, rel=1e-12)
    assert math.sqrt(var) == pytest.approx(scale, rel=1e-12)
    ll = gaussian_log_likelihood(x, mu, var)
    assert ll == pytest.approx(scipy.stats.norm(mu, math.sqrt(var)).logpdf(x).sum(), rel=1e-12)
    for dmu, dvar in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        assert gaussian_log_likelihood(x, mu + dmu, var + dvar) < ll


def test_beta_binomial_update_matches_the_normalised_product_of_likelihood_and_prior():
    prior = BetaPosterior(2.0, 3.0)
    k, n = 7, 20
    post = beta_binomial_update(prior, k, n)
    assert (post.alpha, post.beta) == (9.0, 16.0)
    # the posterior computed the long way: prior * likelihood / evidence, by quadrature
    unnorm = lambda t: scipy.stats.beta(2, 3).pdf(t) * scipy.stats.binom(n, t).pmf(k)
    evidence, _ = scipy.integrate.quad(unnorm, 0, 1)
    theta = np.linspace(0.01, 0.99, 49)
    np.testing.assert_allclose(post.pdf(theta), unnorm(theta) / evidence, rtol=1e-7)
    ref = scipy.stats.beta(post.alpha, post.beta)
    np.testing.assert_allclose(post.pdf(theta), ref.pdf(theta), rtol=1e-12)
    assert post.mean == pytest.approx(ref.mean(), rel=1e-14)
    assert post.var == pytest.approx(ref.var(), rel=1e-14)


def test_beta_predictive_matches_scipy_betabinom():
    post = BetaPosterior(3.5, 1.25)
    np.testing.assert_allclose(
        post.predictive_pmf(12),
        scipy.stats.betabinom(12, 3.5, 1.25).pmf(np.arange(13)),
        rtol=1e-12,
    )


@settings(max_examples=30)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=6),
    st.floats(0.1, 10),
    st.floats(0.1, 10),
)
def test_sequential_updates_equal_one_batch_update(batches, a, b):
    batches = [(min(k, n), n) for k, n in batches]
    post = BetaPosterior(a, b)
    for k, n in batches:
        post = beta_binomial_update(post, k, n)
    total_k = sum(k for k, _ in batches)
    total_n = sum(n for _, n in batches)
    once = beta_binomial_update(BetaPosterior(a, b), total_k, total_n)
    assert post.alpha == pytest.approx(once.alpha) and post.beta == pytest.approx(once.beta)


def test_beta_bad_input():
    with pytest.raises(ValueError, match="positive"):
        BetaPosterior(0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        beta_binomial_update(BetaPosterior(1.0, 1.0), 5, 3)
