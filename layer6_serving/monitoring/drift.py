"""Drift: how far the inputs a model is served have moved from the data it was trained on.

A model is only as good as the match between its training distribution and what it sees in
production. Serving cannot look at labels, but it can look at inputs: summarise the training
data once (the **reference**, stored in the registry manifest), summarise a window of served
inputs the same way, and compare the two with one number per feature.

**Features on fixed bins.** Every feature is a histogram over bins fixed in advance, so the
reference is a few hundred integers (JSON in the manifest) and the served window is summed
bin by bin:

- classifier (images ``(N, 3, 32, 32)`` in ``[0, 1]``): the pixel values of each colour channel
  on 16 equal bins of ``[0, 1]`` (``pixel_r``, ``pixel_g``, ``pixel_b``) and the predicted class
  (``predicted_class``: the argmax of the model's probabilities), plus the per-channel mean and
  standard deviation as plain statistics;
- generator (prompts as token ids): the prompt length on power-of-two bins ``[1, 2), [2, 4), ...``
  (``prompt_length``) and the token ids on equal-width id buckets (``token_bucket``: a BPE
  vocabulary is ordered by merge, so low ids are bytes and early, frequent merges).

A value below the first edge falls in the first bin, one at or above the last edge in the last.

**The statistic: PSI.** With reference bin shares ``e_i`` and served shares ``a_i`` the
population stability index is

    PSI = Σ_i (a_i − e_i) · ln(a_i / e_i) = KL(a ‖ e) + KL(e ‖ a),

the symmetrised Kullback-Leibler divergence (Jeffreys) of the two binned distributions. An empty
bin would make a log infinite, so both shares are floored at ``EPSILON`` = 1e-4 and renormalised.
The conventional reading (credit scoring, where PSI comes from): below 0.1 stable, 0.1 to 0.25
a moderate shift worth watching, above 0.25 a major shift: act (here: retrain).

**Why PSI and not KS.** The two-sample Kolmogorov-Smirnov statistic
``D = max_x |F_e(x) − F_a(x)|`` (computed here too, on the bin edges, as a second opinion) is
a fine effect size, but it is usually read through its p-value, and the p-value's critical
value ``c(α) · √((n + m) / (n m))`` shrinks with the sample size: a service that has seen ten
thousand images calls every harmless change "significant". PSI has thresholds on the size of
the shift itself, works unchanged for categorical features (classes, token buckets) where a
CDF has no natural order, and is additive over bins, so a report can say which bins moved.
Its own sample-size effect is a bias, not a test: with no drift at all ``E[PSI] ≈ (B − 1) ·
(1/n + 1/m)`` for B bins and n, m samples (the χ² approximation), reported as ``noise_floor``
so a small window is not mistaken for drift. Pixel counts are counted per pixel, but pixels of
one image are correlated, so the pixel features' real noise floor is higher than that figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from layer0_math.information import kl_divergence

EPSILON = 1e-4  # floor on a bin's share before the log
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
PIXEL_EDGES = np.linspace(0.0, 1.0, 17)  # 16 equal bins of [0, 1]
LENGTH_EDGES = 2.0 ** np.arange(11)  # [1, 2), [2, 4), ..., [512, 1024]+
TOKEN_BUCKETS = 32
CHANNELS = ("r", "g", "b")
CHUNK = 1024  # images summarised at a time


# ---- bins and histograms ---------------------------------------------------------------------


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each value: ``i`` with ``edges[i] <= v < edges[i + 1]``, clipped to the ends."""
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts (int64, ``len(edges) - 1``) of ``values`` over the bins of :func:`bin_index`."""
    return np.bincount(bin_index(np.ravel(values), edges), minlength=len(edges) - 1)


def token_edges(vocab_size: int, buckets: int = TOKEN_BUCKETS) -> np.ndarray:
    """Integer edges splitting ids ``0 .. vocab_size - 1`` into ``buckets`` equal-width buckets."""
    if vocab_size < 1 or buckets < 1:
        raise ValueError(f"vocab_size and buckets must be >= 1, got {vocab_size}, {buckets}")
    return np.unique(np.round(np.linspace(0, vocab_size, min(buckets, vocab_size) + 1)))


def _feature(edges: np.ndarray, counts: np.ndarray) -> dict[str, list]:
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


# ---- the statistics --------------------------------------------------------------------------


def _shares(counts: Sequence[float], eps: float) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0 or np.any(c < 0) or c.sum() <= 0:
        raise ValueError(
            f"counts must be a non-empty 1-d array of counts with a positive sum, got {c}"
        )
    p = np.maximum(c / c.sum(), eps)
    return p / p.sum()


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = EPSILON) -> float:
    """Population stability index ``Σ (a − e) ln(a / e)`` of two histograms on the same bins:
    the symmetrised KL divergence ``KL(a ‖ e) + KL(e ‖ a)`` of the (floored) bin shares."""
    if len(expected) != len(actual):
        raise ValueError(f"histograms must share bins, got {len(expected)} and {len(actual)} bins")
    e, a = _shares(expected, eps), _shares(actual, eps)
    return float(kl_divergence(a, e) + kl_divergence(e, a))


def ks_binned(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Kolmogorov-Smirnov distance ``max |F_e − F_a|`` of two histograms, at the bin edges."""
    if len(expected) != len(actual):
        raise ValueError(f"histograms must share bins, got {len(expected)} and {len(actual)} bins")
    e, a = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    return float(np.max(np.abs(np.cumsum(e) / e.sum() - np.cumsum(a) / a.sum())))


def noise_floor(bins: int, n_expected: int, n_actual: int) -> float:
    """``(B − 1)(1/n + 1/m)``: the PSI two samples of one distribution show on average."""
    return (bins - 1) * (1.0 / max(n_expected, 1) + 1.0 / max(n_actual, 1))


def status(value: float) -> str:
    """``stable`` (< 0.1), ``moderate`` (< 0.25) or ``major`` by PSI's conventional thresholds."""
    if value < PSI_MODERATE:
        return "stable"
    return "moderate" if value < PSI_MAJOR else "major"


def compare(reference: dict[str, Any], observed: dict[str, Any]) -> dict[str, Any]:
    """Per feature of ``reference`` also in ``observed``: PSI, KS, counts, noise floor, status;
    plus ``max_psi``, the feature it came from, and its status."""
    features = {}
    for name, ref in reference["features"].items():
        obs = observed["features"].get(name)
        if obs is None or sum(obs["counts"]) == 0:
            continue
        if obs["edges"] != ref["edges"]:
            raise ValueError(f"feature {name!r}: observed bins differ from the reference's")
        n_ref, n_obs = sum(ref["counts"]), sum(obs["counts"])
        value = psi(ref["counts"], obs["counts"])
        features[name] = {
            "psi": value,
            "ks": ks_binned(ref["counts"], obs["counts"]),
            "n_reference": n_ref,
            "n_observed": n_obs,
            "noise_floor": noise_floor(len(ref["counts"]), n_ref, n_obs),
            "status": status(value),
        }
    worst = max(features, key=lambda f: features[f]["psi"], default=None)
    max_psi = features[worst]["psi"] if worst else 0.0
    return {
        "features": features,
        "max_psi": max_psi,
        "max_feature": worst,
        "status": status(max_psi),
    }


# ---- summaries: the reference, and the same rows for a served window ---------------------------


def check_images(images: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
    """Images as float64 ``(N, 3, H, W)`` in ``[0, 1]`` (uint8 is divided by 255); probs (N, K)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, 3, H, W) with N >= 1, got shape {images.shape}")
    if images.dtype == np.uint8:
        images = images / 255.0
    images = images.astype(np.float64)
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        raise ValueError(f"images must be in [0, 1], got range [{images.min()}, {images.max()}]")
    if probs is not None:
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape[0] != images.shape[0]:
            raise ValueError(f"probs must be ({images.shape[0]}, K), got shape {probs.shape}")
    return images


def image_rows(images: np.ndarray, probs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image summary rows that add up to a summary: pixel counts per channel ``(N, 3, 16)``,
    channel sums and sums of squares ``(N, 3)``, pixels per image ``(N,)``, predicted class
    one-hot ``(N, K)`` when ``probs`` is given."""
    x = check_images(images, probs)
    n, _, h, w = x.shape
    bins = len(PIXEL_EDGES) - 1
    flat = x.reshape(n * 3, h * w)
    offsets = np.arange(n * 3)[:, None] * bins
    counts = np.bincount((bin_index(flat, PIXEL_EDGES) + offsets).ravel(), minlength=n * 3 * bins)
    rows = {
        "pixels": counts.reshape(n, 3, bins),
        "sum": x.sum(axis=(2, 3)),
        "sum_sq": np.square(x).sum(axis=(2, 3)),
        "n_pixels": np.full(n, h * w, dtype=np.int64),
    }
    if probs is not None:
        classes = np.asarray(probs).shape[1]
        rows["classes"] = np.eye(classes, dtype=np.int64)[np.argmax(probs, axis=1)]
    return rows


def image_summary(totals: dict[str, np.ndarray], n: int) -> dict[str, Any]:
    """A summary from row totals (the sum over images of :func:`image_rows`)."""
    pixels = max(int(totals["n_pixels"]), 1)
    mean = totals["sum"] / pixels
    std = np.sqrt(np.maximum(totals["sum_sq"] / pixels - mean**2, 0.0))
    features = {
        f"pixel_{c}": _feature(PIXEL_EDGES, totals["pixels"][i]) for i, c in enumerate(CHANNELS)
    }
    if "classes" in totals:
        k = len(totals["classes"])
        features["predicted_class"] = _feature(np.arange(k + 1), totals["classes"])
    return {
        "kind": "images",
        "n": n,
        "channel_mean": [float(m) for m in mean],
        "channel_std": [float(s) for s in std],
        "features": features,
    }


def reference_summary(images: np.ndarray, probs: np.ndarray | None = None) -> dict[str, Any]:
    """The drift reference of a classifier's training data (JSON-serialisable).

    ``images`` (N, 3, H, W) in [0, 1] (or uint8), ``probs`` (N, K) the model's predicted
    probabilities on them (for the predicted-class histogram; omitted when None).
    """
    n = len(images)
    if n == 0:
        raise ValueError("images must hold at least one image, got none")
    if probs is not None and len(probs) != n:
        raise ValueError(f"probs must have one row per image ({n}), got {len(probs)}")
    totals: dict[str, np.ndarray] = {}
    for start in range(0, n, CHUNK):  # in chunks: one image's bin indices are 3 H W int64s
        chunk = slice(start, start + CHUNK)
        rows = image_rows(images[chunk], None if probs is None else probs[chunk])
        for key, value in rows.items():
            totals[key] = totals.get(key, 0) + value.sum(axis=0)
    return image_summary(totals, n)


def check_ids(ids: Sequence[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """One prompt's token ids as int64 (at least one, each in ``[0, vocab_size)``)."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"a prompt must be a non-empty list of integer ids, got {arr.dtype} {arr.shape}"
        )
    if arr.min() < 0 or arr.max() >= vocab_size:
        raise ValueError(
            f"token ids must be in [0, {vocab_size}), got range [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int64)


def prompt_row(ids: Sequence[int] | np.ndarray, vocab_size: int) -> dict[str, np.ndarray]:
    """One prompt's summary row: its length one-hot on LENGTH_EDGES, its token-bucket counts."""
    arr = check_ids(ids, vocab_size)
    length = np.zeros(len(LENGTH_EDGES) - 1, dtype=np.int64)
    length[bin_index(len(arr), LENGTH_EDGES)] = 1
    return {"length": length, "tokens": histogram(arr, token_edges(vocab_size))}


def text_summary(totals: dict[str, np.ndarray], n: int, vocab_size: int) -> dict[str, Any]:
    """A summary from row totals (the sum over prompts of :func:`prompt_row`)."""
    return {
        "kind": "text",
        "n": n,
        "vocab_size": vocab_size,
        "features": {
            "prompt_length": _feature(LENGTH_EDGES, totals["length"]),
            "token_bucket": _feature(token_edges(vocab_size), totals["tokens"]),
        },
    }


def reference_summary_text(
    ids: Sequence[Sequence[int]] | np.ndarray, vocab_size: int
) -> dict[str, Any]:
    """The drift reference of a generator's prompts: ``ids`` a list of prompts (token ids) or a
    (N, T) array (every row a prompt of length T), ids in ``[0, vocab_size)``."""
    if len(ids) == 0:
        raise ValueError("ids must hold at least one prompt, got none")
    rows = [prompt_row(p, vocab_size) for p in ids]
    totals = {k: np.sum([r[k] for r in rows], axis=0) for k in rows[0]}
    return text_summary(totals, len(rows), vocab_size)
