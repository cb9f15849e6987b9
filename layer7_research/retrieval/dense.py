"""Dense retrieval: passages and queries embedded by layer 4's BERT, searched by inner product.

Karpukhin et al. 2020 ("Dense Passage Retrieval", https://arxiv.org/abs/2004.04906) score a
passage ``p`` for a query ``q`` by the inner product of two encoders' vectors; here one encoder,
the TinyStories BERT's mean-pooled sentence embedding (:meth:`BERT.sentence_embedding`),
L2-normalised so the inner product is the cosine:

    e(x) = mean_t h_t(x) / ‖mean_t h_t(x)‖,      score(q, p) = e(q) · e(p)

Search is exact (:func:`exact_search`: all N scores, ``Q Pᵀ`` in numpy, then the top k) or
through FAISS (Johnson et al. 2017, https://arxiv.org/abs/1702.08734): ``IndexFlatIP`` is the
same exact search; ``IndexIVFFlat`` is approximate: k-means splits the passages into ``nlist``
cells, and a query scans only the ``nprobe`` cells whose centroids are nearest, which is
``≈ nprobe/nlist`` of the work; with ``nprobe = nlist`` it scans everything and is exact again.
:func:`overlap_at_k` measures the approximation: the fraction of the exact top k the index finds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
import torch

from layer7_research.retrieval.bm25 import rank


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 (N, D)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"cannot normalise zero rows {np.flatnonzero(norms[:, 0] == 0).tolist()}")
    return x / norms


@torch.no_grad()
def embed_texts(
    model: torch.nn.Module,
    tok: Any,
    texts: Sequence[str],
    pad_id: int,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: Any = None,
) -> np.ndarray:
    """Normalised sentence embeddings (N, C) of ``texts`` (each truncated to the model's
    block_size), batched by length with ``[PAD]`` and an attention mask."""
    block = model.config.block_size
    ids = [tok.encode(t)[:block] for t in texts]
    if any(len(i) == 0 for i in ids):
        raise ValueError("embed_texts got an empty text (no tokens to embed)")
    order = np.argsort([len(i) for i in ids], kind="stable")  # similar lengths share a batch
    starts = range(0, len(ids), batch_size)
    out = np.zeros((len(ids), model.config.n_embd), dtype=np.float32)
    for s in progress(starts, desc="embed") if progress else starts:
        rows = order[s : s + batch_size]
        t = max(len(ids[r]) for r in rows)
        batch = torch.full((len(rows), t), pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros(len(rows), t, dtype=torch.long)  # (B, T): 1 = real token
        for j, r in enumerate(rows):
            batch[j, : len(ids[r])], mask[j, : len(ids[r])] = torch.tensor(ids[r]), 1
        emb = model.sentence_embedding(batch.to(device), mask.to(device))  # (B, C)
        out[rows] = emb.float().cpu().numpy()
    return normalize(out)


def exact_search(queries: np.ndarray, passages: np.ndarray, k: int) -> np.ndarray:
    """Top-k passage ids (Q, k) by inner product, best first (ties: lower id), in numpy."""
    if queries.ndim != 2 or passages.ndim != 2 or queries.shape[1] != passages.shape[1]:
        raise ValueError(
            f"queries (Q, D) and passages (N, D) must share D; "
            f"got {queries.shape}, {passages.shape}"
        )
    scores = queries @ passages.T  # (Q, N)
    return np.stack([rank(row, k) for row in scores])


def flat_index(passages: np.ndarray) -> faiss.IndexFlatIP:
    """FAISS's exact inner-product index over (N, D) float32 vectors."""
    index = faiss.IndexFlatIP(passages.shape[1])
    index.add(np.ascontiguousarray(passages, dtype=np.float32))
    return index


def ivf_index(passages: np.ndarray, nlist: int, seed: int = 0) -> faiss.IndexIVFFlat:
    """FAISS's IVF index: k-means (``nlist`` cells, seeded) over the passages, inner product."""
    n, d = passages.shape
    if not 1 <= nlist <= n:
        raise ValueError(f"nlist must be in 1..{n} (the number of passages), got {nlist}")
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    x = np.ascontiguousarray(passages, dtype=np.float32)
    index.train(x)
    index.add(x)
    return index


def faiss_search(index: faiss.Index, queries: np.ndarray, k: int, nprobe: int | None = None):
    """(scores, ids), each (Q, k), from a FAISS index; ``nprobe`` cells for an IVF index."""
    if nprobe is not None:
        if not 1 <= nprobe <= index.nlist:
            raise ValueError(f"nprobe must be in 1..{index.nlist} (nlist), got {nprobe}")
        index.nprobe = nprobe
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def overlap_at_k(exact_ids: np.ndarray, approx_ids: np.ndarray) -> float:
    """Mean over queries of |exact top-k ∩ approximate top-k| / k (the ANN's recall vs exact)."""
    if exact_ids.shape != approx_ids.shape:
        raise ValueError(f"id arrays differ in shape: {exact_ids.shape} vs {approx_ids.shape}")
    k = exact_ids.shape[1]
    hits = [
        len(set(e) & set(a)) for e, a in zip(exact_ids.tolist(), approx_ids.tolist(), strict=True)
    ]
    return float(np.mean(hits) / k)
