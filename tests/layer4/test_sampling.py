"""Sampling rules checked by their distributions: top-k's support, top-p's nucleus (against a
brute-force search over subsets), temperature (chi-square against softmax(z/T)), greedy."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy import stats

from layer4_architectures.sequence.sampling import sample_next, top_k_filter, top_p_filter


def draws(logits: torch.Tensor, n: int, seed: int = 0, **kwargs) -> torch.Tensor:
    """n independent draws from one row of logits (V,) -> (n,)."""
    g = torch.Generator().manual_seed(seed)
    return sample_next(logits.expand(n, -1), generator=g, **kwargs)


def test_top_k_never_emits_outside_the_k_most_likely():
    torch.manual_seed(0)
    logits = torch.randn(30)
    allowed = set(torch.topk(logits, 5).indices.tolist())
    seen = set(draws(logits, 4000, top_k=5, temperature=2.0).tolist())
    assert seen == allowed  # inside the top 5, and every one of them is reachable
    assert set(draws(logits, 4000, temperature=2.0).tolist()) - allowed  # unfiltered goes outside


@pytest.mark.parametrize("p", [0.3, 0.5, 0.75, 0.9, 0.99])
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(p):
    torch.manual_seed(1)
    logits = torch.randn(8, dtype=torch.float64) * 1.5
    probs = logits.softmax(-1).tolist()
    kept = [i for i, z in enumerate(top_p_filter(logits, p).tolist()) if z > float("-inf")]
    # brute force: the smallest size m for which some subset of m tokens has mass >= p
    sizes = (
        m
        for m in range(1, 9)
        if any(sum(probs[i] for i in s) >= p for s in itertools.combinations(range(8), m))
    )
    m = next(sizes)
    assert len(kept) == m
    assert sum(probs[i] for i in kept) >= p
    assert min(probs[i] for i in kept) >= max(probs[i] for i in range(8) if i not in kept)
    assert set(draws(logits.float(), 2000, top_p=p).tolist()) <= set(kept)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_empirical_frequencies_follow_softmax_of_logits_over_t(temperature):
    torch.manual_seed(2)
    logits = torch.randn(6)
    n = 20000
    counts = torch.bincount(draws(logits, n, seed=3, temperature=temperature), minlength=6)
    expected = (logits / temperature).softmax(-1) * n
    chi2 = (((counts - expected) ** 2) / expected).sum().item()
    assert chi2 < stats.chi2.ppf(0.999, df=5)  # the fixed seed makes this deterministic
    wrong = (logits / (2 * temperature)).softmax(-1) * n  # the test can tell T from 2T
    assert (((counts - wrong) ** 2) / wrong).sum().item() > stats.chi2.ppf(0.999, df=5)


def test_temperature_to_zero_is_greedy_and_seeds_reproduce():
    logits = torch.tensor([[0.0, 1.0, 0.2, 0.9], [3.0, -1.0, 2.9, 0.0]])
    greedy = logits.argmax(-1)
    assert torch.equal(sample_next(logits, temperature=0.0), greedy)
    g = torch.Generator().manual_seed(0)
    cold = torch.stack([sample_next(logits, temperature=1e-3, generator=g) for _ in range(200)])
    assert bool((cold == greedy).all())
    a, b = draws(logits[0], 50, seed=5), draws(logits[0], 50, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, draws(logits[0], 50, seed=6))


def test_top_k_keeps_ties_and_the_filters_refuse_bad_values():
    logits = torch.tensor([1.0, 3.0, 3.0, 0.5])
    assert (top_k_filter(logits, 1) > float("-inf")).tolist() == [False, True, True, False]
    assert torch.equal(top_k_filter(logits, 10), logits)
    with pytest.raises(ValueError, match="top_k must be a positive int, got 0"):
        top_k_filter(logits, 0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 1.5"):
        top_p_filter(logits, 1.5)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -0.5"):
        sample_next(logits[None], temperature=-0.5)
