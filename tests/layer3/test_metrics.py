"""Metrics from scratch against independent references: scikit-learn for classification, a
closed form for perplexity, scipy.linalg.sqrtm for FID and a direct double loop for KID."""

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from layer3_framework.metrics import (
    ClassifierFeatures,
    accuracy,
    confusion_matrix,
    feature_distances,
    fid,
    kid,
    perplexity,
    precision_recall_f1,
)
from layer3_framework.ports import MLP

labels = st.integers(3, 6).flatmap(
    lambda k: st.tuples(
        st.just(k),
        st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60),
    )
)


@settings(max_examples=40, deadline=None)
@given(labels)
def test_classification_metrics_match_sklearn(case):
    k, pairs = case
    t, p = np.array(pairs).T
    assert accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p))
    np.testing.assert_array_equal(
        confusion_matrix(t, p, k), skm.confusion_matrix(t, p, labels=range(k))
    )
    for average in ("macro", "micro", None):
        ours = precision_recall_f1(t, p, k, average=average)
        ref = skm.precision_recall_fscore_support(
            t, p, labels=range(k), average=average, zero_division=0
        )[:3]
        for a, b in zip(ours, ref, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-12)


def test_bad_metric_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="average"):
        precision_recall_f1([0], [0], 2, average="weighted")
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="same"):
        accuracy(np.array([0, 1]), np.array([0]))


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    vocab = 37
    logits = torch.zeros(5, 11, vocab)  # uniform predictions
    targets = torch.randint(0, vocab, (5, 11))
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    assert perplexity(float(nll)) == pytest.approx(vocab, rel=1e-6)
    with pytest.raises(ValueError, match="mean_nll"):
        perplexity(float("nan"))


def _fid_reference(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_the_scipy_sqrtm_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(0.5, 1.3, size=(300, 6)) @ rng.normal(size=(6, 6))
    assert fid(a, b) == pytest.approx(_fid_reference(a, b), rel=1e-8)
    assert abs(fid(a, a)) < 1e-8
    # same covariance, shifted mean: FID = ‖Δμ‖² exactly
    assert fid(a, a + np.arange(6)) == pytest.approx(float((np.arange(6) ** 2).sum()), rel=1e-9)


def _mmd_reference(x, y):
    d = x.shape[1]

    def k(u, v):
        return (float(u @ v) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_a_direct_unbiased_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.3, 1.0, size=(30, 4))
    # one subset of all 30 samples: a permutation, which MMD does not see
    mean, std = kid(x, y, subsets=1, subset_size=30)
    assert mean == pytest.approx(_mmd_reference(x, y), rel=1e-9) and std == 0.0
    same = rng.normal(size=(600, 4))
    m, _ = kid(same[:300], same[300:], subsets=5, subset_size=100)
    assert abs(m) < 0.05  # unbiased: near zero for two samples of one distribution


def test_classifier_features_are_the_input_of_the_last_linear_layer():
    torch.manual_seed(0)
    model = MLP([12, 7, 5, 3])
    x = torch.randn(9, 12)
    with torch.no_grad():
        expected = model.act(model.layers[1](model.act(model.layers[0](x))))
    got = ClassifierFeatures(model, batch_size=4)(x)
    torch.testing.assert_close(got, expected)
    assert model.training  # restored


def test_feature_distances_with_a_pluggable_extractor():
    torch.manual_seed(0)
    extractor = ClassifierFeatures(MLP([12, 16, 3], "tanh"))
    a, b = torch.randn(200, 12), torch.randn(200, 12) + 2.0
    same = feature_distances(extractor, a, a, subsets=2, subset_size=100)
    far = feature_distances(extractor, a, b, subsets=2, subset_size=100)
    assert abs(same["fid"]) < 1e-6 and far["fid"] > 0.1 and far["kid"] > same["kid"]
    fa, fb = extractor(a).double().numpy(), extractor(b).double().numpy()
    assert far["fid"] == pytest.approx(_fid_reference(fa, fb), rel=1e-6)


def test_classification_counts_are_layer0s_one_copy():
    import layer0_math.classification as l0

    assert accuracy is l0.accuracy and confusion_matrix is l0.confusion_matrix
