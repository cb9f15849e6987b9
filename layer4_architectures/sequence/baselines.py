"""Baselines a language model must beat: a count-based bigram and an LSTM of the same size.

**The bigram** predicts the next token from the current one alone, by counting. With ``C(a, b)``
the number of times token ``b`` follows token ``a`` in the training stream, ``C(a) = Σ_b C(a, b)``
and ``V`` the vocabulary size, add-k (Lidstone; k = 1 is Laplace) smoothing gives every pair some
mass::

    p(b | a) = (C(a, b) + k) / (C(a) + k·V)

so a pair never seen in training costs ``log((C(a) + kV)/k)`` nats rather than infinity. ``k`` is
a bias/variance knob: small ``k`` trusts the counts, large ``k`` flattens toward uniform. It is
chosen by :func:`choose_k` on held-out *training* text (counts from the first 90% of the training
stream, loss on its last 10%, over a log grid), never on the validation text, then the counts are
refitted on the whole training stream. The validation loss is exact: ``-Σ log p(y_t | x_t)`` over
the very (x, y) pairs the neural models are scored on, divided by their number. Only the observed
pairs are stored (sorted pair codes ``a·V + b``), so a 10k vocabulary costs no ``V²`` table.

**The LSTM** is layer 3's :class:`~layer3_framework.ports.CharLM` (embedding → LSTM → linear),
which works on any token ids; :func:`lstm_hidden_for` sizes its hidden state so that its
parameter count matches a given model's. With embedding size ``E``, hidden size ``H``, ``L``
layers and vocabulary ``V`` (torch's LSTM has two bias vectors per gate block)::

    N = V·E + 4H(E + H) + 8H + (L − 1)(4H(2H) + 8H) + H·V + V
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

K_GRID = tuple(10.0**e for e in np.arange(-4.0, 0.01, 0.5))  # 1e-4 … 1, half-decade steps


@dataclass
class BigramLM:
    """Add-k smoothed bigram counts over a vocabulary of ``vocab_size`` ids."""

    vocab_size: int
    k: float
    codes: np.ndarray  # (P,) sorted a·V + b of every observed pair
    counts: np.ndarray  # (P,) C(a, b) of each
    totals: np.ndarray  # (V,) C(a)

    @classmethod
    def fit(cls, ids: np.ndarray, vocab_size: int, k: float) -> BigramLM:
        """Count the consecutive pairs of the token stream ``ids`` (1-D)."""
        if k <= 0:
            raise ValueError(f"smoothing k must be > 0, got {k}")
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) < 2:
            raise ValueError(f"need a 1-D stream of at least 2 ids, got shape {ids.shape}")
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise ValueError(
                f"ids must lie in [0, {vocab_size}), got range [{ids.min()}, {ids.max()}]"
            )
        codes, counts = np.unique(ids[:-1] * vocab_size + ids[1:], return_counts=True)
        totals = np.bincount(ids[:-1], minlength=vocab_size)
        return cls(
            vocab_size, float(k), codes, counts.astype(np.float64), totals.astype(np.float64)
        )

    def pair_counts(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``C(a, b)`` for arrays of previous ids ``a`` and next ids ``b``."""
        code = np.asarray(a, dtype=np.int64) * self.vocab_size + np.asarray(b, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.codes, code), 0, max(len(self.codes) - 1, 0))
        found = self.codes[pos] == code
        return np.where(found, self.counts[pos], 0.0)

    def log_prob(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``log p(b | a)`` elementwise, in nats."""
        a = np.asarray(a, dtype=np.int64)
        num = self.pair_counts(a, b) + self.k
        return np.log(num) - np.log(self.totals[a] + self.k * self.vocab_size)

    def nll(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """(Σ −log p(y | x) in nats, number of targets) over aligned arrays of any shape."""
        x, y = np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)
        return float(-self.log_prob(x, y).sum()), int(y.size)

    def stream_loss(self, ids: np.ndarray) -> float:
        """Mean nats per token of predicting ``ids[1:]`` from ``ids[:-1]``."""
        total, n = self.nll(ids[:-1], ids[1:])
        return total / n


def choose_k(
    train_ids: np.ndarray, vocab_size: int, grid: Sequence[float] = K_GRID, holdout: float = 0.1
) -> tuple[float, dict[float, float]]:
    """The ``k`` of ``grid`` with the lowest loss on the last ``holdout`` of the training stream,
    counts taken from the rest; returns it and every ``k``'s held-out nats/token."""
    ids = np.asarray(train_ids, dtype=np.int64)
    cut = int(len(ids) * (1 - holdout))
    if cut < 2 or len(ids) - cut < 2:
        raise ValueError(f"the training stream ({len(ids)} ids) is too short to hold out from")
    fitted = BigramLM.fit(ids[:cut], vocab_size, 1.0)
    losses = {}
    for k in grid:
        fitted.k = float(k)
        losses[float(k)] = fitted.stream_loss(ids[cut - 1 :])
    return min(losses, key=losses.get), losses


def lstm_params(vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 1) -> int:
    """Parameters of :class:`~layer3_framework.ports.CharLM` (cell lstm), by the closed form."""
    v, e, h = vocab_size, embed_dim, hidden_size
    first = 4 * h * (e + h) + 8 * h
    later = (num_layers - 1) * (4 * h * (2 * h) + 8 * h)
    return v * e + first + later + h * v + v


def lstm_hidden_for(n_params: int, vocab_size: int, embed_dim: int, num_layers: int = 1) -> int:
    """The hidden size whose one-or-more-layer LSTM LM has the parameter count nearest
    ``n_params`` (the positive root of the quadratic in H, then the nearer integer)."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    # N(H) = a·H² + b·H + c
    a = 4 + 8 * (num_layers - 1)
    b = 4 * embed_dim + 8 + vocab_size + 8 * (num_layers - 1)
    c = vocab_size * embed_dim + vocab_size - n_params
    if c >= 0:
        raise ValueError(
            f"n_params={n_params} is no more than the embedding and output biases alone "
            f"({vocab_size * embed_dim + vocab_size}): no hidden size fits"
        )
    root = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    lo, hi = max(1, math.floor(root)), max(1, math.ceil(root))
    count = lambda h: abs(lstm_params(vocab_size, embed_dim, h, num_layers) - n_params)  # noqa: E731
    return min((lo, hi), key=count)
