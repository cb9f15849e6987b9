"""Initialisation schemes and per-layer gradient norms, against torch and variance formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import MLP, F, Tensor
from layer1_autograd.gradient_flow import initialise, layer_grad_norms, record_gradient_flow


@pytest.mark.parametrize(
    ("scheme", "std"),
    [("he", np.sqrt(2 / 400)), ("small", 0.01), ("naive", 1.0), ("xavier", np.sqrt(2 / 700))],
)
def test_initialisation_has_the_stated_standard_deviation(scheme, std):
    model = MLP([400, 300, 300], rng=np.random.default_rng(0), dtype=np.float64)
    initialise(model, scheme, np.random.default_rng(1))
    w = model.layers[0].weight.data
    np.testing.assert_allclose(w.std(), std, rtol=0.02)  # 120,000 draws: sampling error < 1 %
    np.testing.assert_array_equal(model.layers[1].bias.data, 0.0)
    with pytest.raises(ValueError, match="'kaiming'.*expected one of"):
        initialise(model, "kaiming", np.random.default_rng(0))


def test_layer_grad_norms_match_torch():
    rng = np.random.default_rng(0)
    model = MLP([5, 7, 7, 3], activation="sigmoid", rng=rng, dtype=np.float64)
    x, y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    F.cross_entropy(model(Tensor(x)), y).backward()
    ws = [torch.tensor(l.weight.data, requires_grad=True) for l in model.layers]
    bs = [torch.tensor(l.bias.data) for l in model.layers]
    h = torch.tensor(x)
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = h @ w.T + b
        h = torch.sigmoid(h) if i < 2 else h
    torch.nn.functional.cross_entropy(h, torch.tensor(y)).backward()
    np.testing.assert_allclose(
        layer_grad_norms(model), [w.grad.norm().item() for w in ws], rtol=1e-10
    )


def test_sigmoid_gradients_vanish_and_he_relu_gradients_do_not():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 16)), rng.integers(0, 4, 256)
    kw = {"depth": 10, "width": 32, "steps": 2, "lr": 0.01, "batch_size": 64, "rng": rng}
    sig = record_gradient_flow(x, y, activation="sigmoid", init="he", **kw)
    relu = record_gradient_flow(x, y, activation="relu", init="he", **kw)
    # σ' ≤ 1/4 per layer: over 9 layers at least ~4^9 ≈ 2.6e5 of shrinkage is possible; demand 1e-3.
    assert sig.first_to_last_ratio(0) < 1e-3
    assert 0.1 < relu.first_to_last_ratio(0) < 10
    assert relu.norms.shape == (2, 10)


def test_a_diverging_setting_keeps_its_record_up_to_the_last_finite_step():
    """N(0, 1) weights in a deep ReLU net at a large rate overflow within a few steps: the
    record stops there (no exception), every recorded loss finite, one norm row per loss."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 16)), rng.integers(0, 4, 256)
    kw = {"depth": 10, "width": 64, "lr": 1.0, "batch_size": 64, "rng": rng}
    rec = record_gradient_flow(x, y, activation="relu", init="naive", steps=50, **kw)
    assert 0 < len(rec.losses) < 50
    assert np.isfinite(rec.losses).all() and rec.norms.shape == (len(rec.losses), 10)
