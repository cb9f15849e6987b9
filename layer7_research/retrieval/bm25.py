"""Okapi BM25: the lexical retriever (Robertson & Zaragoza 2009, "The Probabilistic Relevance
Framework: BM25 and Beyond", https://doi.org/10.1561/1500000019).

A document ``d`` is scored for a query ``q`` (a bag of terms, repeats counted) by

    score(q, d) = Σ_{t ∈ q} idf(t) · f(t, d)·(k1 + 1) / (f(t, d) + k1·(1 − b + b·|d| / avgdl))

``f(t, d)`` the count of ``t`` in ``d``, ``|d|`` its length in terms, ``avgdl`` the mean length.
``k1`` saturates the term frequency (the second occurrence adds less than the first); ``b``
normalises by length (a long document mentions everything once). The idf is the
Robertson–Spärck Jones weight, as the ``rank_bm25`` package's ``BM25Okapi`` computes it,

    idf(t) = log((N − n(t) + 0.5) / (n(t) + 0.5)),     n(t) = #documents containing t,

which is negative for a term in more than half of the documents; those terms get the floor
``ε · mean_t idf(t)`` (the mean over the whole vocabulary, before flooring), ``ε = 0.25``.

The code precomputes the *document side* once: ``W[d, t] = idf(t)·f(t,d)(k1+1)/(f(t,d) + K_d)``,
a sparse (documents × vocabulary) matrix, so scoring a query is one sparse product ``W · c(q)``
with ``c(q)`` the query's term counts. Terms outside the vocabulary score 0.

**Tokeniser** (:func:`tokenize`): lower-case, then runs of letters and digits with an optional
apostrophe suffix (``"Lily's"`` → ``"lily's"``, ``"don't"`` → ``"don't"``); punctuation dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """The stated tokeniser: lower-cased alphanumeric runs (an apostrophe suffix kept)."""
    return TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over pre-tokenised documents; :meth:`from_texts` tokenises with
    :func:`tokenize`. ``scores(query_terms)`` -> (N,) float64, ``top_k`` -> ranked ids."""

    def __init__(
        self, docs: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
    ) -> None:
        if not docs:
            raise ValueError("BM25 needs at least one document, got an empty corpus")
        if k1 < 0 or not 0 <= b <= 1 or epsilon < 0:
            raise ValueError(
                f"BM25 needs k1 >= 0, 0 <= b <= 1, epsilon >= 0; got {k1=}, {b=}, {epsilon=}"
            )
        self.k1, self.b, self.epsilon = k1, b, epsilon
        counts = [Counter(d) for d in docs]
        self.vocab = {t: i for i, t in enumerate(sorted({t for c in counts for t in c}))}
        self.doc_len = np.array([len(d) for d in docs], dtype=np.float64)  # |d|, (N,)
        self.avgdl = float(self.doc_len.mean())
        tf = self._term_frequencies(counts)  # (N, V) sparse f(t, d)
        self.idf = self._idf(np.diff(tf.tocsc().indptr).astype(np.float64), len(docs))  # (V,)
        self.weights = self._document_weights(tf)  # (N, V) sparse W[d, t]

    @classmethod
    def from_texts(cls, texts: Sequence[str], **kwargs: float) -> BM25:
        return cls([tokenize(t) for t in texts], **kwargs)

    @property
    def num_docs(self) -> int:
        return len(self.doc_len)

    def _term_frequencies(self, counts: list[Counter]) -> sparse.csr_matrix:
        rows = [d for d, c in enumerate(counts) for _ in c]
        cols = [self.vocab[t] for c in counts for t in c]
        vals = [f for c in counts for f in c.values()]
        shape = (len(counts), len(self.vocab))
        return sparse.csr_matrix((np.array(vals, np.float64), (rows, cols)), shape=shape)

    def _idf(self, n: np.ndarray, num_docs: int) -> np.ndarray:
        """log((N − n + 0.5)/(n + 0.5)); negative ones floored at ε · mean idf."""
        idf = np.log(num_docs - n + 0.5) - np.log(n + 0.5)  # (V,)
        floor = self.epsilon * idf.mean() if len(idf) else 0.0
        return np.where(idf < 0, floor, idf)

    def _document_weights(self, tf: sparse.csr_matrix) -> sparse.csr_matrix:
        """W[d, t] = idf(t)·f(k1+1)/(f + K_d), K_d = k1(1 − b + b|d|/avgdl), on f's nonzeros."""
        k = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)  # (N,)
        w = tf.copy()
        rows = np.repeat(np.arange(tf.shape[0]), np.diff(tf.indptr))  # the row of each nonzero
        f = tf.data
        w.data = self.idf[tf.indices] * f * (self.k1 + 1) / (f + k[rows])
        return w

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """BM25 of every document for the query terms (repeats count), (N,) float64."""
        c = np.zeros(len(self.vocab))
        for t in query:
            if t in self.vocab:
                c[self.vocab[t]] += 1.0
        return np.asarray(self.weights @ c, dtype=np.float64)

    def score_text(self, text: str) -> np.ndarray:
        return self.scores(tokenize(text))

    def top_k(self, query: Sequence[str], k: int) -> np.ndarray:
        """The ``k`` best document ids, best first (ties: the lower id first)."""
        return rank(self.scores(query), k)


def rank(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` largest scores, best first, ties broken by the lower id (stable)."""
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be in 1..{len(scores)} (the number of documents), got {k}")
    return np.argsort(-scores, kind="stable")[:k]
