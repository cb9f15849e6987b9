"""Probability and statistics: drawing samples, estimating expectations, fitting and updating.

**Inverse-CDF sampling.** If ``U ~ Uniform(0, 1)`` and F is a continuous CDF, then
``X = F^-1(U)`` has CDF F, because ``P(F^-1(U) <= x) = P(U <= F(x)) = F(x)``. For the
exponential distribution ``F(x) = 1 - exp(-lambda x)``, so ``X = -log(1 - U) / lambda``.

**Box-Muller.** The Gaussian CDF has no closed-form inverse, but two independent uniforms give
two independent standard normals through polar coordinates: ``R = sqrt(-2 log U1)`` is the
radius of a 2-D standard normal (``R^2 ~ chi^2_2 = Exp(1/2)``) and ``Theta = 2 pi U2`` its
angle, so ``Z1 = R cos Theta``, ``Z2 = R sin Theta``.

**Categorical sampling.** With cumulative probabilities ``c_k = p_1 + ... + p_k``, the class
``k`` with ``c_{k-1} <= U < c_k`` has probability ``p_k``: a binary search per sample.

**Monte Carlo.** ``E[f(X)] ~ (1/n) sum_i f(x_i)`` with standard error ``s / sqrt(n)`` (s the
sample standard deviation of ``f(x_i)``): the error falls as ``1/sqrt(n)`` in any dimension, and
the central limit theorem makes ``mean +- 1.96 se`` a 95% confidence interval.

**Gaussian maximum likelihood.** Maximising
``log L(mu, s2) = -n/2 log(2 pi s2) - sum_i (x_i - mu)^2 / (2 s2)`` gives ``mu = mean(x)`` and
``s2 = (1/n) sum_i (x_i - mu)^2`` (the biased variance: divide by n, not n - 1).

**Conjugate Bayes (Beta-Binomial).** With a ``Beta(a, b)`` prior on a coin's bias theta and k
heads in n flips, the posterior ``p(theta | k) ~ theta^k (1-theta)^(n-k) theta^(a-1)
(1-theta)^(b-1)`` is again a Beta: ``Beta(a + k, b + n - k)``. Its mean ``(a + k) / (a + b + n)``
moves from the prior mean ``a / (a + b)`` to the data's ``k / n`` as n grows, and the posterior
predictive of k' heads in m new flips is the beta-binomial
``P(k') = C(m, k') B(a + k', b + m - k') / B(a, b)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _check_n(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")


def inverse_cdf_sample(
    inverse_cdf: Callable[[np.ndarray], np.ndarray], n: int, rng: np.random.Generator
) -> np.ndarray:
    """``F^-1(U)`` for n uniforms U: samples with CDF F."""
    _check_n(n)
    return np.asarray(inverse_cdf(rng.random(n)), dtype=np.float64)


def sample_exponential(rate: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exponential(rate) samples by the inverse CDF ``-log(1 - u) / rate``."""
    if not rate > 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return inverse_cdf_sample(lambda u: -np.log1p(-u) / rate, n, rng)


def box_muller(n: int, rng: np.random.Generator) -> np.ndarray:
    """n independent standard normal samples from pairs of uniforms."""
    _check_n(n)
    m = (n + 1) // 2
    u1 = 1.0 - rng.random(m)  # in (0, 1]: log(u1) is finite
    u2 = rng.random(m)
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * np.pi * u2
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:n]


def sample_categorical(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n class indices drawn with probabilities ``probs`` (non-negative, summing to 1)."""
    _check_n(n)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"probs must be a non-empty 1-D array, got shape {p.shape}")
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-8):
        raise ValueError(f"probs must be non-negative and sum to 1, got sum {p.sum()!r}")
    cdf = np.cumsum(p)
    cdf[-1] = 1.0  # rounding must not leave u in (cdf[-1], 1) without a class
    return np.searchsorted(cdf, rng.random(n), side="right")


@dataclass(frozen=True)
class MonteCarloEstimate:
    """A Monte Carlo mean with its standard error ``std / sqrt(n)``."""

    mean: float
    stderr: float
    n: int

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The normal-approximation confidence interval ``mean +- z * stderr``."""
        return self.mean - z * self.stderr, self.mean + z * self.stderr


def monte_carlo_expectation(
    f: Callable[[np.ndarray], np.ndarray],
    sampler: Callable[[int, np.random.Generator], np.ndarray],
    n: int,
    rng: np.random.Generator,
) -> MonteCarloEstimate:
    """Estimate ``E[f(X)]`` from n samples ``sampler(n, rng)``; ``f`` is applied vectorised."""
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 to estimate a standard error, got {n!r}")
    values = np.asarray(f(sampler(n, rng)), dtype=np.float64)
    if values.shape[0] != n:
        raise ValueError(f"f(samples) must give one value per sample ({n}), got {values.shape}")
    return MonteCarloEstimate(
        float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)), int(n)
    )


def gaussian_log_likelihood(x: np.ndarray, mu: float, var: float) -> float:
    """``sum_i log N(x_i; mu, var)``."""
    if not var > 0:
        raise ValueError(f"var must be positive, got {var}")
    x = np.asarray(x, dtype=np.float64)
    return float(-0.5 * x.size * math.log(2 * math.pi * var) - np.sum((x - mu) ** 2) / (2 * var))


def gaussian_mle(x: np.ndarray) -> tuple[float, float]:
    """The maximum-likelihood ``(mu, var)`` of a 1-D sample: the mean and the biased variance."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 1:
        raise ValueError(f"x must be a non-empty 1-D sample, got shape {x.shape}")
    mu = float(x.mean())
    return mu, float(np.mean((x - mu) ** 2))


@dataclass(frozen=True)
class BetaPosterior:
    """A Beta(alpha, beta) belief about a probability."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError(f"Beta parameters must be positive, got ({self.alpha}, {self.beta})")

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def var(self) -> float:
        s = self.alpha + self.beta
        return self.alpha * self.beta / (s * s * (s + 1))

    def pdf(self, theta: np.ndarray) -> np.ndarray:
        """The Beta density ``theta^(a-1) (1-theta)^(b-1) / B(a, b)``."""
        theta = np.asarray(theta, dtype=np.float64)
        log_pdf = (
            (self.alpha - 1) * np.log(theta)
            + (self.beta - 1) * np.log1p(-theta)
            - _log_beta(self.alpha, self.beta)
        )
        return np.exp(log_pdf)

    def predictive_pmf(self, m: int) -> np.ndarray:
        """``P(k heads in m new flips)`` for k = 0..m: the beta-binomial distribution."""
        _check_n(m)
        a, b = self.alpha, self.beta
        log_p = [
            _log_binom(m, k) + _log_beta(a + k, b + m - k) - _log_beta(a, b) for k in range(m + 1)
        ]
        return np.exp(np.array(log_p))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _log_binom(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def beta_binomial_update(prior: BetaPosterior, successes: int, trials: int) -> BetaPosterior:
    """The conjugate update: ``Beta(a, b)`` and k of n successes give ``Beta(a + k, b + n - k)``."""
    _check_n(trials)
    if not isinstance(successes, (int, np.integer)) or not 0 <= successes <= trials:
        raise ValueError(f"successes must be an integer in [0, trials={trials}], got {successes!r}")
    return BetaPosterior(prior.alpha + successes, prior.beta + trials - successes)
