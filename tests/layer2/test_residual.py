"""ResidualBlock against the same block written with torch.nn layers (torchvision's names)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import Tensor
from layer2_primitives import ResidualBlock, state_arrays
from tests.layer2.torch_compare import assert_close, compare_grads


class TorchBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = torch.nn.Sequential()
        if stride != 1 or cin != cout:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.downsample(x))


@pytest.mark.parametrize("cin, cout, stride", [(4, 4, 1), (3, 5, 2), (2, 2, 2)])
def test_residual_block_matches_torch(cin, cout, stride, rng):
    ours = ResidualBlock(cin, cout, stride, rng=rng, dtype=np.float64)
    theirs = TorchBlock(cin, cout, stride).double()
    state = state_arrays(ours)
    assert sorted(state) == sorted(theirs.state_dict())
    theirs.load_state_dict(
        {k: torch.tensor(v).reshape(theirs.state_dict()[k].shape) for k, v in state.items()}
    )
    x = rng.normal(size=(3, cin, 7, 6))
    X, tx = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours(X), theirs(tx)
    g = rng.normal(size=y.shape)
    y.backward(g)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, "block output")
    assert_close(X.grad, tx.grad, "block grad x")
    compare_grads(ours, theirs)
