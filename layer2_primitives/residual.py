"""Residual block (He et al., 2016, "basic block"): learn a correction to the identity.

    y = relu( bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x) )

conv1: 3x3, stride s, padding 1; conv2: 3x3, stride 1, padding 1 (both without bias: the batch
norm after them has its own shift). shortcut(x) = x when shapes agree, else a 1x1 conv with
stride s followed by batch norm (`downsample`). The identity path carries the gradient straight
through (dL/dx gets dL/dy unchanged from it), which is why deep residual nets train.

Shapes: (N, C_in, H, W) -> (N, C_out, ceil(H/s), ceil(W/s)). Sub-module names follow
torchvision's BasicBlock: conv1, bn1, conv2, bn2, downsample.0 (conv), downsample.1 (bn).
"""

from __future__ import annotations

import numpy as np

from layer1_autograd import Module, Tensor
from layer2_primitives.conv import Conv2d
from layer2_primitives.normalization import BatchNorm2d


class ResidualBlock(Module):
    """Basic residual block (two 3x3 convolutions with batch norm and a skip connection)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        self.conv1 = Conv2d(
            in_channels, out_channels, 3, stride, 1, bias=False, rng=rng, dtype=dtype
        )
        self.bn1 = BatchNorm2d(out_channels, dtype=dtype)
        self.conv2 = Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, rng=rng, dtype=dtype)
        self.bn2 = BatchNorm2d(out_channels, dtype=dtype)
        self.downsample: list[Module] = []
        if stride != 1 or in_channels != out_channels:
            self.downsample = [
                Conv2d(in_channels, out_channels, 1, stride, bias=False, rng=rng, dtype=dtype),
                BatchNorm2d(out_channels, dtype=dtype),
            ]

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        skip = x
        for layer in self.downsample:
            skip = layer(skip)
        return (out + skip).relu()
