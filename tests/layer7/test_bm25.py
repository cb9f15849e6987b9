"""BM25 (layer7_research.retrieval.bm25): a hand-worked example, and rank_bm25's BM25Okapi."""

from __future__ import annotations

import numpy as np
import pytest
import rank_bm25

from layer7_research.retrieval import BM25, tokenize
from layer7_research.retrieval.bm25 import rank

# The worked example, k1 = 1.5, b = 0.75, ε = 0.25:
#   d0 = "the cat sat" (|d| = 3), d1 = "the cat cat" (3), d2 = "a dog ran far" (4); N = 3,
#   avgdl = 10/3.
#   idf of a term in 1 document: log((3 − 1 + .5)/(1 + .5)) = log(5/3) = 0.5108256 (sat, a, dog,
#   ran, far); in 2 (the, cat): log(1.5/2.5) = −0.5108256 < 0 -> the floor ε·mean idf over the 7
#   terms = 0.25 · (5 − 2)·0.5108256 / 7 = 0.0547313.
#   K_d = k1(1 − b + b|d|/avgdl): |d| = 3 -> 1.5(0.25 + 0.75·0.9) = 1.3875; |d| = 4 -> 1.725.
#   query "cat sat":
#     d0: cat f=1: 0.0547313 · 2.5/2.3875 = 0.0573103; sat f=1: 0.5108256 · 2.5/2.3875 = 0.5348959
#         -> 0.5922062
#     d1: cat f=2: 0.0547313 · 2·2.5/(2 + 1.3875) = 0.0547313 · 1.4760148 = 0.0807842
#     d2: 0
#   query "dog dog" (a repeated term counts twice): d2: 2 · 0.5108256 · 2.5/2.725 = 0.9372947
DOCS = ["The cat sat.", "The cat, cat!", "A dog ran far"]


def test_tokenizer_is_the_stated_one():
    assert tokenize("Lily's dog, Max, didn't RUN!") == ["lily's", "dog", "max", "didn't", "run"]


def test_hand_computed_example():
    bm = BM25.from_texts(DOCS)
    assert bm.avgdl == pytest.approx(10 / 3)
    assert bm.idf[bm.vocab["sat"]] == pytest.approx(0.5108256, abs=1e-7)
    assert bm.idf[bm.vocab["cat"]] == pytest.approx(0.0547313, abs=1e-7)  # the floor
    np.testing.assert_allclose(bm.score_text("cat sat"), [0.5922062, 0.0807842, 0.0], atol=1e-7)
    np.testing.assert_allclose(bm.score_text("dog dog"), [0.0, 0.0, 0.9372947], atol=1e-7)
    np.testing.assert_allclose(bm.score_text("unicorn"), [0.0, 0.0, 0.0])
    assert bm.top_k(tokenize("cat sat"), 2).tolist() == [0, 1]


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.3), (2.0, 1.0), (0.9, 0.0)])
def test_matches_rank_bm25_on_a_random_corpus(k1, b):
    rng = np.random.default_rng(int(k1 * 10 + b * 100))
    # Zipf-distributed words so that some terms sit in > half the documents (negative idf)
    docs = [
        [f"w{int(x) % 60}" for x in rng.zipf(1.4, size=int(rng.integers(1, 40)))] for _ in range(80)
    ]
    ours, ref = BM25(docs, k1=k1, b=b), rank_bm25.BM25Okapi(docs, k1=k1, b=b)
    assert any(ref.idf[t] == ref.epsilon * ref.average_idf for t in ref.idf)  # floor exercised
    for _ in range(20):
        query = [f"w{int(x)}" for x in rng.integers(0, 70, size=int(rng.integers(1, 8)))]
        np.testing.assert_allclose(ours.scores(query), ref.get_scores(query), rtol=0, atol=1e-9)


def test_rank_breaks_ties_by_id_and_checks_k():
    assert rank(np.array([1.0, 3.0, 3.0, 0.5]), 3).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="k must be in 1..4"):
        rank(np.zeros(4), 5)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="empty corpus"):
        BM25([])
    with pytest.raises(ValueError, match="b=1.5"):
        BM25([["a"]], b=1.5)
