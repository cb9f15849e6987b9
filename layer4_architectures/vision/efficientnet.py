"""EfficientNet: MBConv blocks and compound scaling (Tan & Le, 2019).

**MBConv** (the inverted residual of MobileNetV2 plus squeeze-and-excitation):

    h = SiLU(BN(W_expand x))            1×1, C → e·C        (skipped when e = 1)
    h = SiLU(BN(dwconv_k×k,s(h)))       depthwise, stride s
    h = h ⊙ σ(W₂ SiLU(W₁ GAP(h)))       squeeze-and-excitation: a per-channel gate from the
                                        global average, bottleneck width ⌈r·C_in⌉ (r = 1/4)
    y = BN(W_project h)  (+ x when s = 1 and C_in = C_out)     1×1, linear (no activation)

SiLU(x) = x·σ(x). **Compound scaling** grows depth, width and resolution together with one
coefficient φ: depth d = α^φ, width w = β^φ, resolution r = γ^φ, with α·β²·γ² ≈ 2 so FLOPs grow
≈ 2^φ (α=1.2, β=1.1, γ=1.15 found by a small grid search on B0). Channels are rounded to a
multiple of 8 (never below 90% of the scaled value) and repeats rounded up: ⌈d·n⌉.
:func:`compound_scaling` gives these B0..B3-style configurations; the published B1..B3 use
hand-rounded (w, d, r) = (1.0, 1.1, 240), (1.1, 1.2, 260), (1.2, 1.4, 300) instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
B0_RESOLUTION = 224

# B0 stages: (expand ratio, channels, repeats, stride, kernel)
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)


@dataclass(frozen=True)
class Scaling:
    """One compound-scaling point: multipliers and the input resolution."""

    phi: float
    width: float
    depth: float
    resolution: int


def compound_scaling(phi: float, base_resolution: int = B0_RESOLUTION) -> Scaling:
    """Depth α^φ, width β^φ, resolution γ^φ · base (rounded to a multiple of 8)."""
    if phi < 0:
        raise ValueError(f"compound_scaling phi={phi}: expected >= 0")
    res = int(round(base_resolution * GAMMA**phi / 8) * 8)
    return Scaling(phi, BETA**phi, ALPHA**phi, res)


def round_channels(c: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor`` that is not below 90% of ``c``."""
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * c else out


def round_repeats(n: int, depth: float) -> int:
    return int(math.ceil(depth * n))


class SqueezeExcite(nn.Module):
    """x ⊙ σ(W₂ SiLU(W₁ mean_hw(x))): a learned per-channel gate."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(s))))


def conv_bn_act(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.SiLU(inplace=True))


class MBConv(nn.Module):
    """Expand 1×1 → depthwise k×k → SE → project 1×1 (linear), residual when shapes agree."""

    def __init__(
        self, c_in: int, c_out: int, expand: int, kernel: int, stride: int, se_ratio: float = 0.25
    ) -> None:
        super().__init__()
        mid = c_in * expand
        layers: list[nn.Module] = [] if expand == 1 else [conv_bn_act(c_in, mid, 1)]
        layers.append(conv_bn_act(mid, mid, kernel, stride, groups=mid))
        if se_ratio > 0:
            layers.append(SqueezeExcite(mid, max(1, int(c_in * se_ratio))))
        layers += [nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.branch = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.branch(x)  # (B, C_out, H/s, W/s)
        return x + h if self.residual else h


def _check(
    stages: Sequence[Sequence[int]], width: float, depth: float, image_size: int, stem_stride: int
) -> None:
    if width <= 0 or depth <= 0:
        raise ValueError(f"EfficientNet width={width}, depth={depth}: both must be > 0")
    if not stages or any(len(s) != 5 for s in stages):
        raise ValueError(
            "EfficientNet stages must be a non-empty list of [expand, channels, repeats, "
            f"stride, kernel], got {[list(s) for s in stages]}"
        )
    for i, (e, c, n, s, k) in enumerate(stages):
        if e < 1 or c < 1 or n < 1 or s not in (1, 2) or k < 1 or k % 2 == 0:
            raise ValueError(
                f"EfficientNet stages[{i}]={[e, c, n, s, k]}: need expand, channels, repeats "
                ">= 1, stride 1 or 2, an odd kernel"
            )
    reduction = stem_stride * math.prod(s[3] for s in stages)
    if image_size < reduction:
        raise ValueError(
            f"EfficientNet image_size={image_size} is too small for stem_stride={stem_stride} "
            f"and these stage strides (total reduction {reduction}): need image_size >= {reduction}"
        )


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"EfficientNet {name}={value}: expected >= 1")


class EfficientNet(nn.Module):
    """Stem 3×3 conv (stride ``stem_stride``), MBConv stages, 1×1 head conv, pool, dropout, linear.

    ``width`` and ``depth`` multiply the stage table's channels and repeats (see
    :func:`compound_scaling`); ``stem_stride=1`` keeps CIFAR's 32×32 images from shrinking to
    1×1 (B0 reduces by 32).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        width: float = 1.0,
        depth: float = 1.0,
        stages: Sequence[Sequence[int]] = B0_STAGES,
        stem_channels: int = 32,
        head_channels: int = 1280,
        stem_stride: int = 2,
        dropout: float = 0.2,
        se_ratio: float = 0.25,
    ) -> None:
        super().__init__()
        _check_counts(
            in_channels=in_channels, num_classes=num_classes, stem_channels=stem_channels,
            head_channels=head_channels, stem_stride=stem_stride,
        )  # fmt: skip
        _check(stages, width, depth, image_size, stem_stride)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"EfficientNet dropout={dropout}: expected 0 <= dropout < 1")
        if se_ratio < 0:
            raise ValueError(f"EfficientNet se_ratio={se_ratio}: expected >= 0 (0: no SE)")
        c = round_channels(stem_channels * width)
        self.stem = conv_bn_act(in_channels, c, 3, stem_stride)
        blocks: list[nn.Module] = []
        for e, ch, n, s, k in stages:
            c_out = round_channels(ch * width)
            for j in range(round_repeats(n, depth)):
                blocks.append(MBConv(c, c_out, e, k, s if j == 0 else 1, se_ratio))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        head = round_channels(head_channels * width)
        self.head_conv = conv_bn_act(c, head, 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(head, num_classes)

    @property
    def last_stage(self) -> nn.Module:
        """The last convolutional stage (Grad-CAM's layer)."""
        return self.head_conv

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_conv(self.blocks(self.stem(x)))  # (B, C_head, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean(dim=(2, 3))  # (B, C_head)
        return self.head(self.dropout(h))  # (B, classes)


def efficientnet(phi: float, num_classes: int = 1000, **kwargs) -> tuple[EfficientNet, int]:
    """The compound-scaled B0 at ``phi`` and its input resolution."""
    s = compound_scaling(phi)
    kwargs.setdefault("image_size", s.resolution)
    model = EfficientNet(num_classes=num_classes, width=s.width, depth=s.depth, **kwargs)
    return model, s.resolution
