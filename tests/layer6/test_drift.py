"""Drift statistics against closed forms and scipy; summaries against numpy histograms."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from layer0_math.information import kl_divergence
from layer6_serving.monitoring import drift


def test_psi_hand_computed():
    # shares e = (0.5, 0.3, 0.2), a = (0.2, 0.3, 0.5): PSI = 2 * 0.3 * ln(2.5)
    assert drift.psi([50, 30, 20], [2, 3, 5]) == pytest.approx(0.6 * math.log(2.5), rel=1e-3)
    assert drift.psi([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_jeffreys_divergence():
    rng = np.random.default_rng(0)
    e, a = rng.integers(1, 100, 12), rng.integers(1, 100, 12)
    p, q = e / e.sum(), a / a.sum()
    want = kl_divergence(q, p) + kl_divergence(p, q)
    assert drift.psi(e, a, eps=0.0) == pytest.approx(float(want), rel=1e-12)


def test_psi_empty_bin_uses_epsilon():
    # e = (1, 0), a = (0.5, 0.5): floored shares e = (1, 1e-4)/(1 + 1e-4)
    e = np.array([1.0, 1e-4]) / (1 + 1e-4)
    a = np.array([0.5, 0.5])
    want = float(np.sum((a - e) * np.log(a / e)))
    got = drift.psi([10, 0], [5, 5])
    assert math.isfinite(got) and got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("bad", [[], [0, 0], [-1, 2]])
def test_psi_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="counts"):
        drift.psi(bad, bad)


def test_psi_rejects_mismatched_bins():
    with pytest.raises(ValueError, match="share bins"):
        drift.psi([1, 2], [1, 2, 3])


def test_ks_binned_equals_scipy_on_bin_centred_samples():
    # samples that only take bin-centre values: their ECDFs jump only inside bins, so the sup over
    # all x equals the max over the bin edges
    edges = np.linspace(0, 1, 11)
    centres = (edges[:-1] + edges[1:]) / 2
    rng = np.random.default_rng(1)
    x = rng.choice(centres, 700, p=np.full(10, 0.1))
    y = rng.choice(centres, 300, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    got = drift.ks_binned(drift.histogram(x, edges), drift.histogram(y, edges))
    assert got == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-12)


def test_histogram_matches_numpy_and_clips_ends():
    rng = np.random.default_rng(2)
    v = rng.random(1000)
    edges = drift.PIXEL_EDGES
    np.testing.assert_array_equal(drift.histogram(v, edges), np.histogram(v, edges)[0])
    # out of range values land in the end bins; 1.0 lands in the last (closed) bin
    np.testing.assert_array_equal(drift.histogram([-5.0, 1.0, 7.0], [0, 0.5, 1]), [1, 2])


def test_noise_floor_predicts_psi_of_same_distribution():
    rng = np.random.default_rng(3)
    shares = np.full(10, 0.1)
    values = [
        drift.psi(rng.multinomial(2000, shares), rng.multinomial(500, shares)) for _ in range(400)
    ]
    assert np.mean(values) == pytest.approx(drift.noise_floor(10, 2000, 500), rel=0.15)


def test_status_thresholds():
    assert [drift.status(v) for v in (0.0, 0.099, 0.1, 0.249, 0.25, 3.0)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "major",
        "major",
    ]


def _images(n, seed=0, scale=1.0):
    return (np.random.default_rng(seed).random((n, 3, 32, 32)) * scale).astype(np.float32)


def test_reference_summary_against_numpy():
    x = _images(40)
    x[:, 1] *= 0.5  # green darker
    probs = np.random.default_rng(4).random((40, 10))
    ref = drift.reference_summary(x, probs)
    json.dumps(ref)  # JSON-serialisable
    assert ref["kind"] == "images" and ref["n"] == 40
    np.testing.assert_allclose(ref["channel_mean"], x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(
        ref["channel_std"], x.std(axis=(0, 2, 3), dtype=np.float64), rtol=1e-5
    )
    for i, c in enumerate("rgb"):
        want = np.histogram(x[:, i].astype(np.float64), drift.PIXEL_EDGES)[0]
        assert ref["features"][f"pixel_{c}"]["counts"] == want.tolist()
    want_classes = np.bincount(probs.argmax(axis=1), minlength=10).tolist()
    assert ref["features"]["predicted_class"]["counts"] == want_classes


def test_reference_summary_chunks_and_uint8(monkeypatch):
    x = (np.random.default_rng(5).random((10, 3, 8, 8)) * 255).astype(np.uint8)
    whole = drift.reference_summary(x)
    monkeypatch.setattr(drift, "CHUNK", 3)
    assert drift.reference_summary(x) == whole
    assert "predicted_class" not in whole["features"]
    np.testing.assert_allclose(whole["channel_mean"], (x / 255.0).mean(axis=(0, 2, 3)))


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((2, 1, 32, 32)), r"\(N, 3, H, W\)"),
        (np.zeros((0, 3, 32, 32)), "at least one"),
        (np.full((2, 3, 4, 4), 2.0), r"\[0, 1\]"),
        (np.full((2, 3, 4, 4), np.nan), r"\[0, 1\]"),
    ],
)
def test_reference_summary_rejects_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        drift.reference_summary(images)


def test_reference_summary_rejects_bad_probs():
    with pytest.raises(ValueError, match="one row per image"):
        drift.reference_summary(_images(3), np.ones((2, 10)))


def test_compare_detects_darkened_images_only():
    ref = drift.reference_summary(_images(200, seed=6))
    same = drift.compare(ref, drift.reference_summary(_images(200, seed=7)))
    dark_summary = drift.reference_summary(_images(200, seed=8, scale=0.5))
    dark = drift.compare(ref, dark_summary)
    assert same["status"] == "stable" and same["max_psi"] < 0.01
    assert dark["status"] == "major" and dark["max_psi"] > 1.0
    f = dark["features"]["pixel_r"]
    assert f["n_reference"] == f["n_observed"] == 200 * 32 * 32
    # uniform on [0, 0.5): half the bins empty, the other half doubled; closed form with epsilon
    e = np.full(16, 1 / 16)
    a = np.r_[np.full(8, 1 / 8), np.full(8, drift.EPSILON)]
    a /= a.sum()
    assert f["psi"] == pytest.approx(float(np.sum((a - e) * np.log(a / e))), rel=0.02)


def test_reference_summary_text_against_hand_counts():
    ids = [[0, 1, 2], [99] * 20, [50]]
    ref = drift.reference_summary_text(ids, vocab_size=100)
    json.dumps(ref)
    # lengths 3, 20, 1 -> bins [2, 4), [16, 32), [1, 2)
    assert ref["features"]["prompt_length"]["counts"] == [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    tokens = ref["features"]["token_bucket"]
    edges = np.array(tokens["edges"])
    assert edges[0] == 0 and edges[-1] == 100 and len(edges) == drift.TOKEN_BUCKETS + 1
    want = np.histogram([0, 1, 2] + [99] * 20 + [50], edges)[0]
    assert tokens["counts"] == want.tolist() and sum(tokens["counts"]) == 24


def test_reference_summary_text_array_and_small_vocab():
    ref = drift.reference_summary_text(np.array([[0, 1], [2, 3]]), vocab_size=4)
    assert ref["features"]["token_bucket"]["counts"] == [1, 1, 1, 1]
    assert ref["n"] == 2


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([], "at least one prompt"),
        ([[]], "non-empty"),
        ([[0, 100]], r"\[0, 100\)"),
        ([[0.5]], "integer"),
    ],
)
def test_reference_summary_text_rejects_bad_ids(ids, match):
    with pytest.raises(ValueError, match=match):
        drift.reference_summary_text(ids, vocab_size=100)


def test_compare_rejects_different_bins():
    a = drift.reference_summary_text([[1, 2]], vocab_size=100)
    b = drift.reference_summary_text([[1, 2]], vocab_size=50)
    with pytest.raises(ValueError, match="token_bucket"):
        drift.compare(a, b)
