"""ConvNeXt: a ResNet modernised step by step towards a vision Transformer (Liu et al., 2022).

The block keeps the residual form ``x + DropPath(γ ⊙ F(x))`` with a Transformer-like branch:

    F(x) = W₂ · GELU(W₁ · LN(dwconv₇ₓ₇(x)))      W₁: C → 4C,  W₂: 4C → C (an inverted bottleneck)

- the depthwise 7×7 convolution mixes space per channel (the role of attention), the two 1×1
  layers (Linear over the channel axis, in channels-last (B, H, W, C) order) mix channels (the
  MLP); one normalisation (LayerNorm over C) and one activation (GELU) per block;
- layer scale γ ∈ R^C, initialised small (1e-6), lets each block start near the identity;
- stochastic depth drops a sample's whole branch with probability p_l (rising linearly with depth
  to ``drop_path``) and rescales the kept ones by 1/(1-p_l) during training.

The stem is a "patchify" k×k convolution with stride k (k=4 on ImageNet; k=2 or 1 for 32×32
CIFAR images), followed by LN; between stages a LN and a 2×2 stride-2 convolution halve the
resolution. Head: global average pool, LN, Linear. ConvNeXt-T is dims 96/192/384/768, depths
3/3/9/3 (28.6M parameters at 1000 classes); the CIFAR configuration is far smaller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor (computed channels-last)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a sample's branch with probability p, scale kept ones by 1/(1-p)."""
    if p == 0.0 or not training:
        return x
    keep = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device) >= p  # (B, 1, 1, 1)
    return x * keep.to(x.dtype) / (1.0 - p)


class ConvNeXtBlock(nn.Module):
    """x + DropPath(γ ⊙ W₂ GELU(W₁ LN(dwconv7×7(x))))."""

    def __init__(self, dim: int, drop: float = 0.0, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale > 0 else None
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        h = self.fc2(F.gelu(self.fc1(self.norm(h))))  # (B, H, W, C)
        if self.gamma is not None:
            h = h * self.gamma
        h = h.permute(0, 3, 1, 2)  # (B, C, H, W)
        return x + drop_path(h, self.drop, self.training)


def _check_counts(in_channels: int, num_classes: int) -> None:
    for name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if value < 1:
            raise ValueError(f"ConvNeXt {name}={value}: expected >= 1")


def _check(dims: Sequence[int], depths: Sequence[int], patch: int, image_size: int) -> None:
    if len(dims) != len(depths) or not dims:
        raise ValueError(
            f"ConvNeXt dims={list(dims)} and depths={list(depths)} must be non-empty and of "
            "equal length (one entry per stage)"
        )
    if any(d < 1 for d in depths):
        raise ValueError(f"ConvNeXt depths={list(depths)}: every stage needs >= 1 block")
    if any(c < 1 for c in dims):
        raise ValueError(f"ConvNeXt dims={list(dims)}: dims must be >= 1")
    if patch < 1:
        raise ValueError(f"ConvNeXt patch={patch}: expected >= 1")
    smallest = patch * 2 ** (len(dims) - 1)
    if image_size < smallest:
        raise ValueError(
            f"ConvNeXt image_size={image_size} is too small for patch={patch} and {len(dims)} "
            f"stages (each after the first halves it): need image_size >= {smallest}"
        )


class ConvNeXt(nn.Module):
    """Patchify stem, stages of ConvNeXt blocks with LN + 2×2 stride-2 downsampling, LN head."""

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        dims: Sequence[int] = (32, 64, 128),
        depths: Sequence[int] = (2, 2, 2),
        patch: int = 2,
        drop_path: float = 0.0,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        _check_counts(in_channels, num_classes)
        _check(dims, depths, patch, image_size)
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"ConvNeXt drop_path={drop_path}: expected 0 <= drop_path < 1")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, dims[0], patch, stride=patch), LayerNorm2d(dims[0], eps=1e-6)
        )
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()  # p_l rises with depth
        self.downsample = nn.ModuleList()
        self.stages = nn.ModuleList()
        k = 0
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            self.downsample.append(
                nn.Identity()
                if i == 0
                else nn.Sequential(
                    LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, stride=2)
                )
            )
            blocks = [ConvNeXtBlock(dim, rates[k + j], layer_scale) for j in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
            k += depth
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @property
    def last_stage(self) -> nn.Module:
        """The last convolutional stage (Grad-CAM's layer)."""
        return self.stages[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, C0, H/patch, W/patch)
        for down, stage in zip(self.downsample, self.stages, strict=True):
            x = stage(down(x))
        return x  # (B, C_last, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.features(x).mean(dim=(2, 3)))  # (B, C_last)
        return self.head(h)  # (B, classes)
