"""Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus).

For logits z (B, V) the model's distribution is p = softmax(z). The decoding rules reshape it:

- temperature T > 0: p_T = softmax(z / T); T → 0 concentrates on argmax z (greedy, T = 0
  here), T > 1 flattens it.
- top-k: keep the k largest logits, set the rest to −∞ (renormalised by the softmax).
- top-p (Holtzman et al. 2019): sort p descending and keep the smallest prefix whose mass is
  ≥ p; a token is kept iff the mass strictly before it is < p, so the most likely token
  always survives.

The filters are pure functions (logits in, filtered logits out); :func:`sample_next` composes
them (temperature, then top-k, then top-p) and draws with an optional ``torch.Generator`` so a
seed gives the same tokens every time.
"""

from __future__ import annotations

import torch


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits (..., V) with everything below the k-th largest set to −∞ (ties at the k-th kept)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be a positive int, got {k!r}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Logits (..., V) restricted to the nucleus: the smallest most-likely set with mass ≥ p."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p!r}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # (..., V) mass strictly before each token
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """z / T, then the top-k and top-p filters; temperature must be > 0 here."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to filter logits, got {temperature}")
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of logits (B, V) -> (B,); temperature 0 is greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits.float(), temperature, top_k, top_p).softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
