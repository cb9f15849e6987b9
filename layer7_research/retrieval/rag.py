"""Retrieval-augmented generation (Lewis et al. 2020, https://arxiv.org/abs/2005.11401), reduced
to its measurable core: retrieve a passage for a question, put it in the prompt, generate, score.

**Retrieval quality** is recall@k over questions with a known gold passage ``g(q)``:

    recall@k = (1/|Q|) Σ_q [g(q) ∈ top-k(q)]

for BM25 (:mod:`.bm25`), dense BERT retrieval (:mod:`.dense`), and a **hybrid** by reciprocal-rank
fusion (Cormack et al. 2009, https://doi.org/10.1145/1571941.1572114), which needs no score
calibration between the two retrievers:

    RRF(d) = Σ_r 1 / (c + rank_r(d)),     rank_r from 1, c = 60, a list's missing ids add 0.

**Generation** is a cloze answer from layer 4's GPT: the prompt is the passage (its last tokens,
truncated so that prompt + answer fit in ``block_size``), a space, then the question's sentence up
to the blank; the answer is the first word of the greedy continuation, correct when it equals the
blanked word (case-insensitive). With the right passage in context the answer is a copy of a word
the model has seen a few sentences back (what induction heads do); with no passage it can only
guess from the sentence. Beside exact-match accuracy, :func:`answer_logprob` gives the softer
signal: the answer's log-likelihood under each prompt and the rank of its first token, so a
passage that helps without making the answer the top choice still shows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FIRST_WORD = re.compile(r"^\s*([A-Za-z]+)")
RRF_C = 60


def recall_at_k(ranked: np.ndarray, gold: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """recall@k for each k: the fraction of rows of ``ranked`` (Q, K) with gold in the first k."""
    ranked, gold = np.asarray(ranked), np.asarray(gold)
    if ranked.ndim != 2 or gold.shape != (ranked.shape[0],):
        raise ValueError(f"ranked must be (Q, K) and gold (Q,); got {ranked.shape}, {gold.shape}")
    if max(ks) > ranked.shape[1] or min(ks) < 1:
        raise ValueError(f"ks {list(ks)} must lie in 1..{ranked.shape[1]} (the ranked depth)")
    hit = ranked == gold[:, None]  # (Q, K): where the gold id sits
    return {k: float(hit[:, :k].any(axis=1).mean()) for k in ks}


def reciprocal_rank_fusion(rankings: Sequence[np.ndarray], k: int, c: int = RRF_C) -> np.ndarray:
    """Fuse ranked id lists (each (Q, K_r)) into the top ``k`` ids (Q, k) by RRF; ties: lower id."""
    if not rankings:
        raise ValueError("reciprocal_rank_fusion needs at least one ranking")
    out = []
    for rows in zip(*(np.asarray(r).tolist() for r in rankings), strict=True):
        score: dict[int, float] = {}
        for row in rows:
            for pos, doc in enumerate(row, start=1):
                score[doc] = score.get(doc, 0.0) + 1.0 / (c + pos)
        fused = sorted(score, key=lambda d: (-score[d], d))
        if len(fused) < k:
            raise ValueError(f"the rankings hold {len(fused)} distinct ids, fewer than k={k}")
        out.append(fused[:k])
    return np.array(out, dtype=np.int64)


def prompt_ids(tok: Any, passage: str | None, prefix: str, block_size: int, room: int) -> list[int]:
    """Token ids of ``passage + " " + prefix`` (or ``prefix`` alone), the passage cut from the left
    so that the prompt leaves ``room`` tokens for the answer inside ``block_size``."""
    question = tok.encode(prefix if passage is None else " " + prefix)
    budget = block_size - room - len(question)
    if budget < 0:
        raise ValueError(
            f"the question alone is {len(question)} tokens; block_size={block_size} leaves no "
            f"room for {room} answer tokens"
        )
    context = [] if passage is None else tok.encode(passage)
    return context[max(0, len(context) - budget) :] + question  # the passage's last tokens


@torch.no_grad()
def greedy_word(model: torch.nn.Module, tok: Any, ids: list[int], max_new_tokens: int) -> str:
    """The first word of the model's greedy continuation of ``ids`` ("" if it starts no word)."""
    x = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
    out = model.generate(x, max_new_tokens, temperature=0.0)[0, len(ids) :]
    m = FIRST_WORD.match(tok.decode(out.tolist(), errors="replace"))
    return m.group(1) if m else ""


def answer(
    model: torch.nn.Module, tok: Any, passage: str | None, prefix: str, max_new_tokens: int = 4
) -> str:
    """The GPT's answer to one cloze question given ``passage`` (or none)."""
    ids = prompt_ids(tok, passage, prefix, model.config.block_size, max_new_tokens)
    return greedy_word(model, tok, ids, max_new_tokens)


@torch.no_grad()
def answer_logprob(
    model: torch.nn.Module, tok: Any, passage: str | None, prefix: str, expected: str
) -> tuple[float, int]:
    """log p(" " + expected | prompt) in nats (summed over its tokens, teacher-forced) and the
    rank of its first token among the model's next-token choices (0 = the greedy choice)."""
    target = tok.encode(" " + expected)
    ids = prompt_ids(tok, passage, prefix, model.config.block_size, len(target))
    x = torch.tensor([ids + target[:-1]], device=next(model.parameters()).device)
    logp = model(x)[0, len(ids) - 1 :].float().log_softmax(dim=-1)  # (len(target), V)
    y = torch.tensor(target, device=logp.device)
    total = logp.gather(1, y[:, None]).sum()
    first_rank = (logp[0] > logp[0, y[0]]).sum()
    return float(total), int(first_rank)


def is_correct(predicted: str, expected: str) -> bool:
    return predicted.lower() == expected.lower()
