"""The hand-derived MLP backward pass == the tensor engine == PyTorch autograd (float64, 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import MLP, F, Tensor
from layer1_autograd.manual_mlp import ManualMLP

SIZES = (784, 32, 32, 10)


@pytest.fixture
def batch():
    rng = np.random.default_rng(1)
    return rng.normal(size=(64, 784)), rng.integers(0, 10, 64)


def test_manual_grads_equal_tensor_engine_and_torch(batch):
    x, y = batch
    manual = ManualMLP.init(SIZES, rng=np.random.default_rng(0), dtype=np.float64)
    loss, grads = manual.loss_and_grads(x, y)

    engine = MLP(SIZES, rng=np.random.default_rng(0), dtype=np.float64)
    for name, p in engine.named_parameters():  # the same draws, in the same order
        np.testing.assert_array_equal(p.data, manual.params[name])
    engine_loss = F.cross_entropy(engine(Tensor(x)), y)
    engine_loss.backward()

    ref = {n: torch.tensor(a, requires_grad=True) for n, a in manual.params.items()}
    h = torch.tensor(x)
    for i in range(3):
        h = h @ ref[f"layers.{i}.weight"].T + ref[f"layers.{i}.bias"]
        h = torch.relu(h) if i < 2 else h
    torch_loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    torch_loss.backward()

    np.testing.assert_allclose(loss, torch_loss.item(), rtol=1e-12)
    np.testing.assert_allclose(engine_loss.item(), torch_loss.item(), rtol=1e-12)
    for name, p in engine.named_parameters():
        np.testing.assert_allclose(
            grads[name],
            ref[name].grad.numpy(),
            rtol=1e-10,
            atol=1e-10,
            err_msg=f"manual vs torch: {name}",
        )
        np.testing.assert_allclose(
            p.grad,
            ref[name].grad.numpy(),
            rtol=1e-10,
            atol=1e-10,
            err_msg=f"tensor engine vs torch: {name}",
        )


def test_bad_shapes_are_clear_errors():
    manual = ManualMLP.init(SIZES, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(N, 784\).*\(3, 20\)"):
        manual.forward(np.zeros((3, 20), np.float32))
    with pytest.raises(KeyError, match="layers.2.bias"):
        ManualMLP({k: v for k, v in manual.params.items() if k != "layers.2.bias"})
