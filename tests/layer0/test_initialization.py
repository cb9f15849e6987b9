"""Initialisation schemes against PyTorch's ``nn.init`` and the variance recursion; the
backward pass of :func:`propagate` against torch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer0_math.initialization import ACTIVATIONS, INITS, init_std, propagate


@pytest.mark.parametrize(("fan_in", "fan_out"), [(300, 500), (1000, 200)])
def test_init_std_matches_torch_nn_init(fan_in, fan_out):
    torch.manual_seed(0)
    w = torch.empty(fan_out, fan_in)  # torch's (out, in) layout
    torch_stds = {
        "xavier": torch.nn.init.xavier_normal_(w).std().item(),
        "he": torch.nn.init.kaiming_normal_(w, nonlinearity="relu").std().item(),
    }
    for scheme, measured in torch_stds.items():
        # a std estimated from ~1e5 draws is within ~0.5% of the true one
        assert init_std(scheme, fan_in, fan_out) == pytest.approx(measured, rel=0.02), scheme
    assert init_std("naive", fan_in, fan_out) == 1.0 and init_std("small", 3, 4) == 0.01


def test_init_std_refuses_unknown_schemes_and_fans():
    assert INITS == ("naive", "small", "xavier", "he")
    with pytest.raises(ValueError, match="lecun"):
        init_std("lecun", 4, 4)
    with pytest.raises(ValueError, match="got 0 and 4"):
        init_std("he", 0, 4)


def test_propagate_matches_the_variance_recursion_for_linear_tanh_regime():
    # small weights keep tanh in its linear regime: std shrinks by sqrt(width) * sigma per layer
    fwd, _ = propagate(5, 200, 400, "small", "tanh", np.random.default_rng(5))
    factor = np.sqrt(200) * 0.01
    np.testing.assert_allclose(fwd[1:] / fwd[:-1], factor, rtol=0.05)
    with pytest.raises(ValueError, match="gelu"):
        propagate(2, 4, 4, "he", "gelu", np.random.default_rng(0))


def test_he_keeps_the_relu_second_moment():
    # E[h_l^2] = n sigma^2 E[z^2]/2 = E[h_{l-1}^2] at sigma^2 = 2/n: the std stays put
    fwd, bwd = propagate(10, 512, 512, "he", "relu", np.random.default_rng(6))
    assert 0.7 < fwd[-1] / fwd[0] < 1.4 and 0.7 < bwd[0] / bwd[-1] < 1.4


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_propagate_backward_matches_torch_autograd(activation):
    depth, width, batch, scheme, seed = 4, 16, 8, "xavier", 11
    fwd, bwd = propagate(depth, width, batch, scheme, activation, np.random.default_rng(seed))
    # the same draws, in the same order, through torch: weights, inputs, upstream gradient
    rng = np.random.default_rng(seed)
    std = init_std(scheme, width, width)
    weights = [torch.tensor(rng.standard_normal((width, width)) * std) for _ in range(depth)]
    h = torch.tensor(rng.standard_normal((batch, width)))
    phi = torch.tanh if activation == "tanh" else torch.relu
    inputs, outputs = [], []
    for W in weights:
        h = h.detach().requires_grad_(True)
        inputs.append(h)
        outputs.append(phi(h @ W))
        h = outputs[-1]
    upstream = torch.tensor(rng.standard_normal((batch, width)))
    grads = []
    for x, out in zip(reversed(inputs), reversed(outputs), strict=True):
        (upstream,) = torch.autograd.grad(out, x, upstream)
        grads.append(upstream.std(unbiased=False).item())
    np.testing.assert_allclose(fwd, [o.std(unbiased=False).item() for o in outputs], rtol=1e-12)
    np.testing.assert_allclose(bwd, grads[::-1], rtol=1e-12)
