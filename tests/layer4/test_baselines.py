"""The bigram against a dense, loop-counted reference; its choice of k; the LSTM's parameter count
against torch's own module."""

import math

import numpy as np
import pytest

from layer3_framework.ports import CharLM
from layer4_architectures.sequence.baselines import (
    K_GRID,
    BigramLM,
    choose_k,
    lstm_hidden_for,
    lstm_params,
)


def dense_reference(ids, vocab_size, k):
    """p(b | a) = (C(a, b) + k) / (C(a) + kV), counted pair by pair into a V x V table."""
    counts = np.zeros((vocab_size, vocab_size))
    for a, b in zip(ids[:-1], ids[1:], strict=True):
        counts[a, b] += 1
    return (counts + k) / (counts.sum(1, keepdims=True) + k * vocab_size)


@pytest.fixture
def stream():
    rng = np.random.default_rng(0)
    # a Markov chain with a skewed transition matrix: some pairs never occur
    trans = rng.dirichlet(np.full(9, 0.3), size=9)
    ids = [0]
    for _ in range(3000):
        ids.append(int(rng.choice(9, p=trans[ids[-1]])))
    return np.array(ids)


@pytest.mark.parametrize("k", [1e-3, 0.5, 1.0])
def test_bigram_probabilities_equal_the_dense_reference(stream, k):
    model = BigramLM.fit(stream, 9, k)
    ref = dense_reference(stream.tolist(), 9, k)
    a, b = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    got = np.exp(model.log_prob(a.ravel(), b.ravel())).reshape(9, 9)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-12)  # each row is a distribution


def test_bigram_nll_is_the_exact_sum_over_the_scored_pairs(stream):
    train, val = stream[:2500], stream[2500:]
    model = BigramLM.fit(train, 9, 0.1)
    ref = dense_reference(train.tolist(), 9, 0.1)
    expected = -sum(math.log(ref[a, b]) for a, b in zip(val[:-1], val[1:], strict=True))
    total, n = model.nll(val[:-1], val[1:])
    assert n == len(val) - 1
    assert total == pytest.approx(expected, rel=1e-12)
    assert model.stream_loss(val) == pytest.approx(expected / n, rel=1e-12)


def test_k_is_the_grid_minimum_on_held_out_training_text(stream):
    k, losses = choose_k(stream, 9)
    cut = int(len(stream) * 0.9)
    for kk in K_GRID:
        ref = dense_reference(stream[:cut].tolist(), 9, kk)
        held = stream[cut - 1 :]
        expected = -np.mean([math.log(ref[a, b]) for a, b in zip(held[:-1], held[1:], strict=True)])
        assert losses[kk] == pytest.approx(expected, rel=1e-10)
    assert k == min(losses, key=losses.get)


def test_a_deterministic_cycle_is_learned_to_near_zero_loss():
    ids = np.tile(np.arange(5), 200)  # 0 1 2 3 4 0 1 ...: each token fixes the next
    k, _ = choose_k(ids, 5)
    model = BigramLM.fit(ids, 5, k)
    assert k == min(K_GRID)
    assert model.stream_loss(ids) < 1e-3  # log(1 + 4k/(C+...)) with k = 1e-4


def test_unseen_pairs_cost_a_finite_smoothed_loss():
    model = BigramLM.fit(np.array([0, 1, 0, 1, 0]), 3, 1.0)
    # C(0) = 2, C(0, 2) = 0: p = 1 / (2 + 3)
    assert model.log_prob(np.array([0]), np.array([2]))[0] == pytest.approx(math.log(1 / 5))
    # token 2 never seen as a predecessor: uniform
    assert model.log_prob(np.array([2]), np.array([1]))[0] == pytest.approx(math.log(1 / 3))


def test_bigram_bad_input_is_refused():
    with pytest.raises(ValueError, match="k must be > 0"):
        BigramLM.fit(np.array([0, 1]), 2, 0.0)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2\)"):
        BigramLM.fit(np.array([0, 5]), 2, 1.0)
    with pytest.raises(ValueError, match="too short"):
        choose_k(np.array([0, 1, 0]), 2)


@pytest.mark.parametrize(
    ("v", "e", "h", "layers"), [(65, 32, 128, 1), (300, 16, 40, 2), (7, 3, 5, 3)]
)
def test_lstm_parameter_count_equals_torch(v, e, h, layers):
    model = CharLM(v, embed_dim=e, hidden_size=h, cell="lstm", num_layers=layers)
    assert lstm_params(v, e, h, layers) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("target", "layers"), [(1_050_000, 1), (400_000, 2), (90_000, 1)])
def test_lstm_hidden_size_is_the_nearest_match(target, layers):
    h = lstm_hidden_for(target, 2048 if target > 100_000 else 300, 64, layers)
    v = 2048 if target > 100_000 else 300
    gap = abs(lstm_params(v, 64, h, layers) - target)
    assert gap <= abs(lstm_params(v, 64, h - 1, layers) - target)
    assert gap <= abs(lstm_params(v, 64, h + 1, layers) - target)


def test_an_lstm_smaller_than_its_embeddings_is_refused():
    with pytest.raises(ValueError, match="no hidden size fits"):
        lstm_hidden_for(1000, 2048, 64)
