"""Entropy, KL and cross-entropy against scipy; cross-entropy from logits against torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layer0_math.information import (
    cross_entropy,
    cross_entropy_from_logits,
    entropy,
    kl_divergence,
)

weights = arrays(np.float64, 6, elements=st.floats(0, 10)).filter(lambda w: w.sum() > 1e-3)


def _normalise(w):
    return w / w.sum()


@given(weights, weights)
def test_entropy_and_kl_match_scipy(wp, wq):
    p, q = _normalise(wp), _normalise(wq)
    assert entropy(p) == pytest.approx(scipy.stats.entropy(p), abs=1e-12)
    assert entropy(p, base=2) == pytest.approx(scipy.stats.entropy(p, base=2), abs=1e-12)
    assert kl_divergence(p, q) == pytest.approx(scipy.stats.entropy(p, q), abs=1e-12)


@given(weights, weights.map(lambda w: w + 0.01))
def test_cross_entropy_is_entropy_plus_kl(wp, wq):
    p, q = _normalise(wp), _normalise(wq)
    assert cross_entropy(p, q) == pytest.approx(entropy(p) + kl_divergence(p, q), abs=1e-12)
    assert kl_divergence(p, q) >= -1e-12  # Gibbs' inequality
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


def test_entropy_extremes_and_zero_support():
    assert entropy(np.array([0.0, 1.0, 0.0])) == 0.0
    assert entropy(np.full(8, 1 / 8), base=2) == pytest.approx(3.0)
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    assert math.isinf(kl_divergence(p, q)) and math.isinf(cross_entropy(p, q))
    assert kl_divergence(q, p) == pytest.approx(math.log(2))  # KL is not symmetric
    batch = np.array([[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(entropy(batch), [math.log(2), 0.0])


def test_distribution_validation():
    with pytest.raises(ValueError, match="sum to 1"):
        entropy(np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="non-negative"):
        entropy(np.array([1.5, -0.5]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_from_logits_matches_torch(reduction):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((32, 10)) * 30  # confident, some very wrong
    logits[0, 3] = 1000.0  # would overflow exp
    targets = rng.integers(0, 10, size=32)
    ours = cross_entropy_from_logits(logits, targets, reduction=reduction)
    ref = F.cross_entropy(torch.tensor(logits), torch.tensor(targets), reduction=reduction)
    # tiny losses (a confident right answer) agree to eps * |logits| in absolute terms
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-12, atol=1e-12)


def test_cross_entropy_from_logits_equals_cross_entropy_of_softmax_and_one_hot():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 4))
    targets = np.array([0, 3, 1, 1, 2])
    q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    onehot = np.eye(4)[targets]
    np.testing.assert_allclose(
        cross_entropy_from_logits(logits, targets, reduction="none"),
        cross_entropy(onehot, q),
        rtol=1e-12,
    )


def test_cross_entropy_from_logits_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cross_entropy_from_logits(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="integers"):
        cross_entropy_from_logits(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy_from_logits(np.zeros((2, 3)), np.array([0, 1]), reduction="avg")
