"""Synthetic sequence tasks that isolate what attention and positions buy, and their probes.

Two tasks, each generated from a seed (a ``torch.Generator``), each a batch ``(x, y)`` of a
causal language model (predict ``y_t`` from ``x_{≤t}``; ``y_t = -100`` is not scored):

**Lag copy** (:func:`lag_copy_batch`), a length-generalisation task where position matters. The
input is i.i.d. uniform tokens ``x_1..x_T``; the target at position ``t`` is the token ``k``
places back, ``y_t = x_{t-k}`` (unscored for ``t ≤ k``). Nothing in the *content* says where
``t-k`` is: a model must know *relative* position. Content alone (no positional encoding)
cannot tell ``x_{t-k}`` from ``x_{t-k±1}``; an absolute code (learned or sinusoidal) can solve
it at the positions it was trained on; a relative code (RoPE, where ``q_t·k_s`` depends on
``t - s`` only) can express "look ``k`` back" once, for every ``t``, including positions never
seen in training. Trained at ``T = 64`` and evaluated at ``T = 128``, the four encodings come
apart.

**Repeated random tokens** (:func:`repeat_batch`), the induction task of Olsson et al. (2022),
*In-context learning and induction heads*. ``P`` distinct random tokens, repeated:
``x = (a_1..a_P, a_1..a_P, a_1..)``, with the period ``P`` drawn per row (a fixed ``P`` could be
solved by position alone, "look ``P - 1`` back"). Before the first repeat the next token is
unpredictable; after it, it is a copy, and the two-layer circuit that does it is the *induction
head*: a
layer-0 *previous-token head* writes "the token before me was ``a_i``" into position ``i+1``,
and a layer-1 head at position ``t`` (holding ``a_i`` again) queries for that and attends to
``i+1``, the position just after the previous occurrence of the current token, whose token it
copies. Its probe (:func:`induction_scores`) is the mean attention weight on exactly that
position:

    score(head) = mean_{b, t ∈ repeat} A[b, head, t, s(t) + 1],    s(t) = max{s < t: x_s = x_t}

Uniform causal attention puts ``1/(t+1)`` on every key (0-based ``t``), so chance is
``mean_t 1/(t+1)`` over the scored positions (:func:`uniform_induction_chance`); a perfect
induction head scores 1. :func:`previous_token_scores` is the same probe for the key ``t-1``.
"""

from __future__ import annotations

import torch

IGNORE = -100  # cross-entropy's ignore_index: positions that are not scored


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def lag_copy_batch(
    batch_size: int, seq_len: int, vocab_size: int, lag: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``, each (B, T): uniform tokens and ``y_t = x_{t-lag}`` (IGNORE for ``t < lag``)."""
    _check_positive(batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size, lag=lag)
    if lag >= seq_len:
        raise ValueError(f"lag must be < seq_len, got lag={lag} with seq_len={seq_len}")
    x = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)  # (B, T)
    y = torch.full_like(x, IGNORE)
    y[:, lag:] = x[:, :-lag]
    return x, y


def repeat_batch(
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    generator: torch.Generator,
    *,
    min_period: int,
    max_period: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``, each (B, T): per row, ``P`` distinct random tokens (``P`` uniform in
    ``[min_period, max_period]``) repeated to fill ``T + 1`` positions, ``x`` the first ``T``
    and ``y`` the next token. ``y_t`` is scored where copying predicts it, ``t ≥ P`` (the token
    ``x_t`` occurred at ``t - P``, followed there by ``y_t``). The period varies by row so that
    "attend ``P - 1`` back" is no solution: the model must find the previous occurrence by
    content, which is what an induction head does."""
    _check_positive(batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size)
    if not 1 <= min_period <= max_period <= min(vocab_size, seq_len - 1):
        raise ValueError(
            f"need 1 <= min_period <= max_period <= min(vocab_size, seq_len - 1) = "
            f"{min(vocab_size, seq_len - 1)}, got min_period={min_period}, max_period={max_period}"
        )
    period = torch.randint(min_period, max_period + 1, (batch_size, 1), generator=generator)
    # distinct tokens per row: a random permutation of the vocabulary, read cyclically mod P
    perm = torch.rand(batch_size, vocab_size, generator=generator).argsort(dim=1)  # (B, V)
    pos = torch.arange(seq_len + 1)[None, :]  # (1, T+1)
    seq = perm.gather(1, pos % period)  # (B, T+1)
    x, y = seq[:, :-1].clone(), seq[:, 1:].clone()
    y[pos[:, :-1] < period] = IGNORE  # before the first repeat nothing is predictable
    return x, y


def previous_occurrence(ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T): the largest ``s < t`` with ``ids[s] == ids[t]``, or -1 if none."""
    _, t = ids.shape
    same = ids[:, :, None] == ids[:, None, :]  # (B, T, T): [b, t, s]
    earlier = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril(-1)  # s < t
    pos = torch.arange(t, device=ids.device).expand(t, t)
    cand = torch.where(same & earlier, pos, torch.full_like(pos, -1))  # (B, T, T)
    return cand.max(dim=-1).values


def _check_attention(attn: torch.Tensor, ids: torch.Tensor) -> None:
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attention must be (B, H, T, T), got {tuple(attn.shape)}")
    if ids.shape != (attn.shape[0], attn.shape[-1]):
        raise ValueError(
            f"ids must be (B, T) = {(attn.shape[0], attn.shape[-1])}, got {tuple(ids.shape)}"
        )


def induction_scores(attn: torch.Tensor, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
    """(B, H, T, T) attention and (B, T) ids -> (H,): each head's mean attention from a query
    ``t ≥ start`` whose token occurred before to the key just after that previous occurrence."""
    _check_attention(attn, ids)
    b, h, t, _ = attn.shape
    prev = previous_occurrence(ids)  # (B, T)
    query = torch.arange(t, device=ids.device).expand(b, t)
    valid = (prev >= 0) & (query >= start)  # (B, T)
    if not bool(valid.any()):
        raise ValueError(f"no query at t >= {start} has an earlier occurrence of its token")
    target = (prev + 1).clamp(min=0)  # (B, T); prev+1 <= t, so causal attention can reach it
    weights = attn.gather(-1, target[:, None, :, None].expand(b, h, t, 1))[..., 0]  # (B, H, T)
    mask = valid[:, None, :].to(weights.dtype)
    return (weights * mask).sum(dim=(0, 2)) / mask.sum(dim=(0, 2))


def previous_token_scores(attn: torch.Tensor, start: int = 1) -> torch.Tensor:
    """(B, H, T, T) -> (H,): each head's mean attention from ``t ≥ start`` to ``t - 1``."""
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attention must be (B, H, T, T), got {tuple(attn.shape)}")
    start = max(start, 1)
    sub = attn.diagonal(offset=-1, dim1=-2, dim2=-1)  # (B, H, T-1): A[t, t-1] for t = 1..T-1
    return sub[..., start - 1 :].mean(dim=(0, 2))


def uniform_induction_chance(ids: torch.Tensor, start: int = 0) -> float:
    """The induction score of uniform causal attention (weight ``1/(t+1)`` on each key ``≤ t``)
    over the same queries :func:`induction_scores` scores."""
    b, t = ids.shape
    prev = previous_occurrence(ids)
    query = torch.arange(t, device=ids.device).expand(b, t)
    valid = (prev >= 0) & (query >= start)
    return float((1.0 / (query[valid] + 1).double()).mean())
