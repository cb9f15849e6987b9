"""Dense retrieval (layer7_research.retrieval.dense): exact search against scikit-learn and a
plain loop, FAISS flat and IVF (nprobe = nlist) against exact, BERT embeddings against the
model's own sentence_embedding of each text alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from layer4_architectures.sequence.bert import BERT
from layer7_research.retrieval import dense


def _vectors(n: int, d: int, seed: int) -> np.ndarray:
    return dense.normalize(np.random.default_rng(seed).standard_normal((n, d)))


def test_normalize_gives_unit_rows_and_rejects_zero_rows():
    x = dense.normalize(np.array([[3.0, 4.0], [1.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [1.0, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError, match=r"zero rows \[1\]"):
        dense.normalize(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_exact_top_k_equals_brute_force_and_sklearn():
    p, q = _vectors(300, 24, 0), _vectors(40, 24, 1)
    ours = dense.exact_search(q, p, 7)
    loop = np.array([sorted(range(len(p)), key=lambda j: -float(np.dot(qi, p[j])))[:7] for qi in q])
    np.testing.assert_array_equal(ours, loop)
    # cosine distance = 1 − inner product on unit vectors: the same order
    nn = NearestNeighbors(n_neighbors=7, metric="cosine", algorithm="brute").fit(p)
    np.testing.assert_array_equal(ours, nn.kneighbors(q, return_distance=False))


def test_faiss_flat_equals_exact():
    p, q = _vectors(500, 32, 2), _vectors(50, 32, 3)
    scores, ids = dense.faiss_search(dense.flat_index(p), q, 10)
    np.testing.assert_array_equal(ids, dense.exact_search(q, p, 10))
    np.testing.assert_allclose(scores, np.sort(q @ p.T, axis=1)[:, ::-1][:, :10], atol=1e-5)


def test_ivf_with_every_cell_probed_is_exact_and_fewer_cells_approximate():
    p, q = _vectors(800, 16, 4), _vectors(60, 16, 5)
    exact = dense.exact_search(q, p, 10)
    index = dense.ivf_index(p, nlist=16, seed=0)
    _, ids = dense.faiss_search(index, q, 10, nprobe=16)
    np.testing.assert_array_equal(ids, exact)
    assert dense.overlap_at_k(exact, ids) == 1.0
    _, one = dense.faiss_search(index, q, 10, nprobe=1)
    assert dense.overlap_at_k(exact, one) < 1.0  # one cell of 16 misses neighbours
    with pytest.raises(ValueError, match="nprobe must be in 1..16"):
        dense.faiss_search(index, q, 10, nprobe=17)
    with pytest.raises(ValueError, match="nlist must be in 1..800"):
        dense.ivf_index(p, nlist=801)


def test_overlap_at_k_hand_example():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert dense.overlap_at_k(exact, approx) == pytest.approx((2 / 4 + 4 / 4) / 2)


class _CharTok:
    """A stand-in tokenizer: characters to ids 2..21 (0 = [PAD], 1 = [MASK])."""

    def encode(self, text: str) -> list[int]:
        return [2 + ord(ch) % 20 for ch in text]


def test_bert_embeddings_are_each_text_alone_normalised_in_order():
    torch.manual_seed(0)
    bert = BERT(22, mask_id=1, pad_id=0, block_size=32, n_layer=1, n_head=2, n_embd=16).eval()
    texts = ["a cat", "the dog ran far away", "hi", "a much longer sentence than the others"]
    tok = _CharTok()
    got = dense.embed_texts(bert, tok, texts, pad_id=0, batch_size=3)
    with torch.no_grad():
        alone = [
            bert.sentence_embedding(torch.tensor([tok.encode(t)[:32]]))[0].numpy() for t in texts
        ]
    want = np.stack([a / np.linalg.norm(a) for a in alone])
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
