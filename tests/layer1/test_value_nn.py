"""Neurons and MLPs on the scalar engine, against the same network in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import Tensor, Value, ValueMLP, hinge_loss


def test_value_mlp_forward_and_gradients_match_torch():
    rng = np.random.default_rng(0)
    model = ValueMLP([3, 4, 4, 1], activation="tanh", rng=rng)
    points, labels = rng.normal(size=(5, 3)), [1, -1, 1, 1, -1]
    loss = hinge_loss([model(p.tolist())[0] for p in points], labels)
    loss.backward()

    weights = []
    for layer in model.layers:
        w = torch.tensor(
            [[p.data for p in n.w] for n in layer.neurons], dtype=torch.float64, requires_grad=True
        )
        b = torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64, requires_grad=True)
        weights.append((w, b))
    h = torch.tensor(points)
    for i, (w, b) in enumerate(weights):
        h = h @ w.T + b
        h = torch.tanh(h) if i < len(weights) - 1 else h
    ref = torch.relu(1 - torch.tensor(labels, dtype=torch.float64) * h[:, 0]).mean()
    ref.backward()

    ours = "ACTUAL: the Value engine, DESIRED: torch"
    np.testing.assert_allclose(loss.data, ref.item(), rtol=1e-12, err_msg=f"hinge loss ({ours})")
    for i, (layer, (w, b)) in enumerate(zip(model.layers, weights, strict=True)):
        ours_w = np.array([[p.grad for p in n.w] for n in layer.neurons])
        np.testing.assert_allclose(
            ours_w, w.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"dL/dW, layer {i} ({ours})"
        )
        np.testing.assert_allclose(
            [n.b.grad for n in layer.neurons],
            b.grad.numpy(),
            rtol=1e-10,
            atol=1e-12,
            err_msg=f"dL/db, layer {i} ({ours})",
        )
    assert len(model.parameters()) == 3 * 4 + 4 + 4 * 4 + 4 + 4 + 1
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_bad_inputs_are_clear_errors():
    model = ValueMLP([2, 3, 1], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="expects 2 inputs, got 3"):
        model([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="-1 or \\+1"):
        hinge_loss(model([1.0, 2.0]), [0])
    with pytest.raises(ValueError, match="swish"):
        ValueMLP([2, 1], activation="swish", rng=np.random.default_rng(0))


def test_value_activations_are_names_of_the_one_registry():
    from layer1_autograd.nn import ACTIVATIONS
    from layer1_autograd.value_nn import VALUE_ACTIVATIONS

    assert set(VALUE_ACTIVATIONS) <= set(ACTIVATIONS)
    x = np.array([0.7, -1.3])
    for name in VALUE_ACTIVATIONS:  # each one agrees with the tensor engine's function
        model = ValueMLP([2, 3, 1], activation=name, rng=np.random.default_rng(0))
        hidden = [n([Value(float(v)) for v in x]).data for n in model.layers[0].neurons]
        neurons = model.layers[0].neurons
        w = np.array([[p.data for p in n.w] for n in neurons])
        b = np.array([n.b.data for n in neurons])
        expected = ACTIVATIONS[name](Tensor(x @ w.T + b)).data
        np.testing.assert_allclose(hidden, expected, rtol=1e-12, err_msg=name)
