"""The manual-vs-engine gradient check catches a wrong formula; MNIST as standardised vectors."""

from __future__ import annotations

import numpy as np
import pytest

from layer1_autograd.gradcheck import grad_difference
from layer1_autograd.manual_mlp import ManualMLP
from layer1_autograd.mnist import flat_mnist


def test_grad_difference_is_rounding_for_the_right_backward_and_large_for_a_wrong_one(
    monkeypatch,
):
    rng = np.random.default_rng(0)
    model = ManualMLP.init((784, 16, 16, 10), rng=rng)
    x, y = rng.normal(size=(20, 784)).astype(np.float32), rng.integers(0, 10, 20)
    assert grad_difference(model, x, y) < 1e-12
    right = ManualMLP.loss_and_grads

    def planted(self, x, y):  # a backward pass that forgets the 1/N of the mean on one bias
        loss, grads = right(self, x, y)
        grads["layers.2.bias"] = grads["layers.2.bias"] * len(x)
        return loss, grads

    monkeypatch.setattr(ManualMLP, "loss_and_grads", planted)
    assert grad_difference(model, x, y) > 1e-3


@pytest.mark.data
def test_flat_mnist_standardises_with_training_statistics_only():
    d = flat_mnist(np.random.default_rng(0), n_val=1000, n_train=5000, n_test=2000)
    assert d.x_train.shape == (5000, 784) and d.x_val.shape == (1000, 784)
    assert d.x_test.shape == (2000, 784) and d.x_train.dtype == np.float32
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-4
    assert abs(float(d.x_val.mean())) > 1e-4  # held-out data is not re-standardised on itself
    assert set(np.unique(d.y_train)) == set(range(10))
    with pytest.raises(ValueError, match="n_val=0"):
        flat_mnist(np.random.default_rng(0), n_val=0)
