"""ResNet: residual learning with basic and bottleneck blocks (He et al., 2015).

A deep plain stack of convolutions is harder to *optimise* than a shallow one (the training
error rises with depth). A residual block learns the difference to the identity instead,

    y = ReLU(F(x) + S(x)),    F = BN∘conv∘ReLU∘BN∘conv (basic),  S = identity or a projection,

so that ∂y/∂x = ∂F/∂x + 1 along the shortcut: the gradient reaches early layers undiminished
and a block that is not useful can learn F ≈ 0. Two block kinds:

- basic: two 3×3 convolutions at the stage's width (ResNet-18/34 and the CIFAR ResNets);
- bottleneck: 1×1 reduce to ``width/4`` (× ``groups`` paths, as in ResNeXt), 3×3, 1×1 expand
  back to ``width``: most of the computation happens at the narrow width.

A stage is ``n`` blocks at one width; the first block of every stage after the first halves the
resolution (stride 2) and changes the width, and its shortcut is either option A of the paper
(``shortcut="pad"``: subsample and zero-pad the new channels, no parameters) or option B
(``shortcut="conv"``: 1×1 conv + BN). Configurations:

- CIFAR ResNet-(6n+2): 3 stages of widths 16/32/64, ``n`` basic blocks each, 3×3 stem, option A
  (ResNet-20: n=3, 0.27M parameters; ResNet-56: n=9, 0.85M);
- ResNet-18 (CIFAR stem: one 3×3 conv, no max-pool): 4 stages 64/128/256/512 of 2 basic blocks,
  option B (11.17M parameters with 10 classes).

``zero_init_residual`` sets the scale γ of the last BN of every residual branch to 0, so that
each block starts as the identity (Goyal et al., 2017): the network starts shallow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("pad", "conv")
BOTTLENECK_EXPANSION = 4


@dataclass
class ResNetConfig:
    """A ResNet's shape; :meth:`check` names the first field that cannot be built."""

    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 10
    widths: Sequence[int] = (16, 32, 64)
    blocks: Sequence[int] = (3, 3, 3)
    block: str = "basic"
    shortcut: str = "pad"
    stem_width: int | None = None  # None: the first stage's width
    groups: int = 1  # bottleneck 3×3 conv groups (ResNeXt); basic blocks need 1
    zero_init_residual: bool = False

    def check(self) -> None:
        """Raise ValueError naming the field of a configuration that cannot be built."""
        self._check_sizes()
        if self.block not in BLOCKS:
            raise ValueError(f"ResNet block={self.block!r}: expected one of {BLOCKS}")
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"ResNet shortcut={self.shortcut!r}: expected one of {SHORTCUTS}")
        if len(self.widths) != len(self.blocks) or not self.blocks:
            raise ValueError(
                f"ResNet widths={list(self.widths)} and blocks={list(self.blocks)} must be "
                "non-empty and of equal length (one entry per stage)"
            )
        if any(b < 1 for b in self.blocks):
            raise ValueError(f"ResNet blocks={list(self.blocks)}: every stage needs >= 1 block")
        if any(w < 1 for w in self.widths):
            raise ValueError(f"ResNet widths={list(self.widths)}: widths must be >= 1")
        self._check_groups()
        smallest = 2 ** (len(self.blocks) - 1)
        if self.image_size < smallest:
            raise ValueError(
                f"ResNet image_size={self.image_size} is too small for {len(self.blocks)} "
                f"stages (each after the first halves it): need image_size >= {smallest}"
            )

    def _check_sizes(self) -> None:
        for name in ("in_channels", "image_size", "num_classes", "groups"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"ResNet {name}={value}: expected >= 1")
        if self.stem_width is not None and self.stem_width < 1:
            raise ValueError(f"ResNet stem_width={self.stem_width}: expected >= 1 or None")

    def _check_groups(self) -> None:
        if self.block == "basic" and self.groups != 1:
            raise ValueError(f"ResNet groups={self.groups}: basic blocks need groups=1")
        if self.block != "bottleneck":
            return
        for w in self.widths:
            mid = w // BOTTLENECK_EXPANSION
            if w % BOTTLENECK_EXPANSION or mid % self.groups:
                raise ValueError(
                    f"ResNet widths={list(self.widths)}: a bottleneck width must be divisible "
                    f"by {BOTTLENECK_EXPANSION} and width/{BOTTLENECK_EXPANSION} by "
                    f"groups={self.groups} (got {w})"
                )


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv k×k (no bias: BN has one) then BatchNorm."""
    conv = nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


class PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the extra channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = c_out - c_in, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C_in, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (B, C_out, H/s, W/s)


def shortcut(c_in: int, c_out: int, stride: int, kind: str) -> nn.Module:
    """The identity when shapes agree, else option A (``pad``) or B (``conv``: 1×1 conv + BN)."""
    if c_in == c_out and stride == 1:
        return nn.Identity()
    if kind == "pad" and c_out >= c_in:
        return PadShortcut(c_in, c_out, stride)
    return conv_bn(c_in, c_out, 1, stride)


class BasicBlock(nn.Module):
    """y = ReLU(BN(conv3×3(ReLU(BN(conv3×3(x))))) + S(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int, kind: str, groups: int = 1) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            conv_bn(c_in, c_out, 3, stride), nn.ReLU(inplace=True), conv_bn(c_out, c_out, 3)
        )
        self.shortcut = shortcut(c_in, c_out, stride, kind)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.branch[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))  # (B, C_out, H/s, W/s)


class Bottleneck(nn.Module):
    """y = ReLU(BN(1×1 expand(ReLU(BN(3×3 grouped(ReLU(BN(1×1 reduce(x))))))) + S(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int, kind: str, groups: int = 1) -> None:
        super().__init__()
        mid = c_out // BOTTLENECK_EXPANSION
        self.branch = nn.Sequential(
            conv_bn(c_in, mid, 1),
            nn.ReLU(inplace=True),
            conv_bn(mid, mid, 3, stride, groups),
            nn.ReLU(inplace=True),
            conv_bn(mid, c_out, 1),
        )
        self.shortcut = shortcut(c_in, c_out, stride, kind)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.branch[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))  # (B, C_out, H/s, W/s)


class ResNet(nn.Module):
    """Stem (3×3 conv-BN-ReLU), residual stages, global average pool, linear classifier.

    ``channels_last`` stores the weights and feeds the input in NHWC memory order (faster
    convolutions on recent CPUs/GPUs; the numbers are the same).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        blocks: Sequence[int] = (3, 3, 3),
        block: str = "basic",
        shortcut: str = "pad",
        stem_width: int | None = None,
        groups: int = 1,
        zero_init_residual: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        cfg = ResNetConfig(
            in_channels, image_size, num_classes, tuple(widths), tuple(blocks), block,
            shortcut, stem_width, groups, zero_init_residual,
        )  # fmt: skip
        cfg.check()
        self.config = cfg
        unit = BasicBlock if cfg.block == "basic" else Bottleneck
        c = cfg.stem_width or cfg.widths[0]
        self.stem = nn.Sequential(conv_bn(cfg.in_channels, c, 3), nn.ReLU(inplace=True))
        stages = []
        for i, (width, n) in enumerate(zip(cfg.widths, cfg.blocks, strict=True)):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(unit(c, width, stride, cfg.shortcut, cfg.groups))
                c = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c, cfg.num_classes)
        self._init(cfg.zero_init_residual)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _init(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    @property
    def last_stage(self) -> nn.Module:
        """The last convolutional stage (Grad-CAM's layer)."""
        return self.stages[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.stages(self.stem(x))  # (B, C_last, H / 2^(S-1), W / 2^(S-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean(dim=(2, 3))  # (B, C_last)
        return self.head(h)  # (B, classes)


def cifar_resnet(n: int, num_classes: int = 10, **kwargs) -> ResNet:
    """CIFAR ResNet-(6n+2): 3 stages 16/32/64 of ``n`` basic blocks, option-A shortcuts."""
    return ResNet(num_classes=num_classes, widths=(16, 32, 64), blocks=(n, n, n), **kwargs)


def resnet18(num_classes: int = 10, **kwargs) -> ResNet:
    """ResNet-18 with the CIFAR stem: 4 stages 64/128/256/512 of 2 basic blocks, option B."""
    return ResNet(
        num_classes=num_classes,
        widths=(64, 128, 256, 512),
        blocks=(2, 2, 2, 2),
        shortcut="conv",
        **kwargs,
    )
