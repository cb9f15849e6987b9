"""An airbench-style fast CIFAR network: a frozen patch-whitening first layer, three plain conv
groups, a global max-pool (after Keller Jordan's airbench94, 2024: 94% on CIFAR-10 in 3.8 s on
one A100).

**Why it trains fast.** Three ideas do most of the work:

1. *Whitening.* Let p ∈ R^d (d = C·k·k) be the pixels of a k×k patch of a training image and
   Σ = E[p pᵀ] = V Λ Vᵀ their second-moment matrix (eigenvectors V, eigenvalues λ_i). The first
   layer is a k×k convolution with 2d fixed filters, the rows of

       W = [ Λ_ε^{-1/2} Vᵀ ;  −Λ_ε^{-1/2} Vᵀ ],     Λ_ε = Λ + ε I,

   so its first d outputs z = Λ_ε^{-1/2} Vᵀ p have E[z zᵀ] = Λ (Λ + ε)^{-1} ≈ I: decorrelated
   inputs of unit scale, the conditioning a first layer would otherwise spend epochs learning.
   The ± pair lets the GELU after it keep both signs of every direction. W is computed once,
   from the first training batch the model sees (:meth:`Airbench.init_whitening`), and frozen; it
   is part of the state dict, so a checkpoint rebuilds the model with no dataset.
2. *A short, wide, plain network.* Three groups conv→max-pool→BN→GELU→conv→BN→GELU (widths
   64/256/256 in the paper) take 32×32 → 31 → 15 → 7 → 3, then a global max-pool and a linear
   head whose logits are scaled by a small factor (1/9): no residuals and few layers, so every
   FLOP runs in large, fast convolutions. Each conv starts as the identity on its first
   C_in channels (Dirac init), so the untrained net already passes its input through.
3. *BatchNorm with only a bias*, no scale (γ ≡ 1: the following conv rescales anyway), fast
   running statistics (running ← 0.6 · running + 0.4 · batch) and ε = 1e-12. The biases learn
   ``bias_lr_scale`` (64) times faster than the weights. With plain SGD this is done by
   reparametrisation: b = s · b̃ with s = √64 = 8 gives ∂L/∂b̃ = s ∂L/∂b, so one SGD step moves
   b by s² · lr · ∂L/∂b (momentum is linear, and weight decay shrinks b̃ and b by the same
   fraction), exactly a per-group learning rate without a second parameter group.

The rest of airbench's recipe lives in the training config: SGD-Nesterov, label smoothing 0.2,
flip + 2-pixel translate augmentation, a short warm-up-then-decay schedule. Test-time
augmentation is the model's ``tta`` (eval mode only): ``flip`` averages the logits of the image
and its mirror, ``flip_translate`` (airbench's level 2) adds the mirror pairs of the image
shifted by one pixel up-left and down-right (reflection padding), weighted ½ : ¼ : ¼.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

TTA = ("none", "flip", "flip_translate")
GROUP_POOLS = 3  # each conv group halves the resolution once


@dataclass
class AirbenchConfig:
    """The network's shape and airbench's constants; :meth:`check` names a field that cannot
    be built."""

    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 10
    widths: Sequence[int] = (64, 256, 256)
    whiten_kernel: int = 2
    whiten_eps: float = 5e-4
    bn_momentum: float = 0.6  # running ← bn_momentum · running + (1 − bn_momentum) · batch
    bn_eps: float = 1e-12
    bias_lr_scale: float = 64.0
    output_scale: float = 1 / 9
    tta: str = "flip_translate"

    def check(self) -> None:
        """Raise ValueError naming the first field of a configuration that cannot be built."""
        if len(self.widths) != GROUP_POOLS or any(w < 1 for w in self.widths):
            raise ValueError(
                f"Airbench widths={list(self.widths)}: expected {GROUP_POOLS} widths >= 1"
            )
        for name in ("in_channels", "num_classes", "whiten_kernel"):
            if getattr(self, name) < 1:
                raise ValueError(f"Airbench {name}={getattr(self, name)}: expected >= 1")
        smallest = self.whiten_kernel - 1 + 2**GROUP_POOLS
        if self.image_size < smallest:
            raise ValueError(
                f"Airbench image_size={self.image_size} is too small: the {self.whiten_kernel}x"
                f"{self.whiten_kernel} whitening conv and {GROUP_POOLS} halvings need "
                f"image_size >= {smallest}"
            )
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ValueError(f"Airbench bn_momentum={self.bn_momentum}: expected in [0, 1)")
        if self.whiten_eps <= 0 or self.bias_lr_scale <= 0 or self.output_scale <= 0:
            raise ValueError(
                "Airbench whiten_eps, bias_lr_scale and output_scale must be > 0, got "
                f"{self.whiten_eps}, {self.bias_lr_scale}, {self.output_scale}"
            )
        if self.tta not in TTA:
            raise ValueError(f"Airbench tta={self.tta!r}: expected one of {TTA}")


def patches(images: torch.Tensor, k: int) -> torch.Tensor:
    """Every k×k patch (stride 1) of ``images`` (B, C, H, W), flattened: (B·(H−k+1)·(W−k+1),
    C·k·k), in the order of a conv filter's weights (C, k, k)."""
    cols = F.unfold(images.double(), k)  # (B, C·k·k, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (B·L, C·k·k)


def whitening_filters(images: torch.Tensor, k: int, eps: float) -> torch.Tensor:
    """The 2·C·k·k frozen filters [Λ_ε^{-1/2} Vᵀ; −Λ_ε^{-1/2} Vᵀ] of the patches' second-moment
    matrix Σ = E[p pᵀ] = V Λ Vᵀ (largest eigenvalue first), shaped (2·C·k·k, C, k, k)."""
    p = patches(images, k)  # (N, d)
    sigma = p.T @ p / p.shape[0]  # (d, d)
    lam, vec = torch.linalg.eigh(sigma)  # ascending
    lam, vec = lam.flip(0), vec.flip(1)
    rows = vec.T / torch.sqrt(lam.clamp_min(0) + eps)[:, None]  # (d, d): Λ_ε^{-1/2} Vᵀ
    c = images.shape[1]
    return torch.cat([rows, -rows]).reshape(-1, c, k, k).float()  # (2d, C, k, k)


class BiasNorm(nn.Module):
    """BatchNorm without a scale, with a bias learning ``scale²`` times faster under SGD:
    y = (x − μ) / √(σ² + ε) + scale · b̃ (see the module docstring)."""

    def __init__(self, channels: int, momentum: float, eps: float, lr_scale: float) -> None:
        super().__init__()
        # torch's momentum weighs the new batch: running ← (1 − m) · running + m · batch
        self.norm = nn.BatchNorm2d(channels, eps=eps, momentum=1.0 - momentum, affine=False)
        self.scale = math.sqrt(lr_scale)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) + self.scale * self.bias.view(1, -1, 1, 1)  # (B, C, H, W)


def dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3×3 'same' conv without bias whose first min(C_in, C_out) filters start as the
    identity (Dirac), the others at torch's default initialisation."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


class ConvGroup(nn.Module):
    """conv → max-pool 2 → BN → GELU → conv → BN → GELU: (B, C_in, H, W) → (B, C_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int, cfg: AirbenchConfig) -> None:
        super().__init__()
        norm = (cfg.bn_momentum, cfg.bn_eps, cfg.bias_lr_scale)
        self.conv1, self.norm1 = dirac_conv(c_in, c_out), BiasNorm(c_out, *norm)
        self.conv2, self.norm2 = dirac_conv(c_out, c_out), BiasNorm(c_out, *norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))  # (B, C_out, H/2, W/2)
        return F.gelu(self.norm2(self.conv2(x)))  # (B, C_out, H/2, W/2)


class Airbench(nn.Module):
    """Whitening conv → GELU → 3 conv groups → global max-pool → linear (no bias) × scale.

    The whitening filters are set from the first batch seen in training mode (or by an explicit
    :meth:`init_whitening`); the ``whitened`` buffer records that they were, so a reloaded
    checkpoint keeps its filters. ``channels_last`` stores weights and feeds inputs in NHWC.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        widths: Sequence[int] = (64, 256, 256),
        whiten_kernel: int = 2,
        whiten_eps: float = 5e-4,
        bn_momentum: float = 0.6,
        bn_eps: float = 1e-12,
        bias_lr_scale: float = 64.0,
        output_scale: float = 1 / 9,
        tta: str = "flip_translate",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        cfg = AirbenchConfig(
            in_channels, image_size, num_classes, tuple(widths), whiten_kernel, whiten_eps,
            bn_momentum, bn_eps, bias_lr_scale, output_scale, tta,
        )  # fmt: skip
        cfg.check()
        self.config, self.tta = cfg, tta
        d = in_channels * whiten_kernel**2
        self.whiten = nn.Conv2d(in_channels, 2 * d, whiten_kernel, bias=True)
        self.whiten.weight.requires_grad_(False)  # frozen: set from the data, never trained
        nn.init.zeros_(self.whiten.bias)
        self.register_buffer("whitened", torch.tensor(False))
        chans = [2 * d, *cfg.widths]
        self.groups = nn.Sequential(
            *(ConvGroup(a, b, cfg) for a, b in zip(chans[:-1], chans[1:], strict=True))
        )
        self.head = nn.Linear(cfg.widths[-1], num_classes, bias=False)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor) -> None:
        """Set the frozen first-layer filters from ``images`` (B, C, H, W), normalised as the
        model will see them (see :func:`whitening_filters`)."""
        k = self.config.whiten_kernel
        w = whitening_filters(images.float().cpu(), k, self.config.whiten_eps)
        self.whiten.weight.copy_(w.to(self.whiten.weight.device))
        self.whitened.fill_(True)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """One view's logits: (B, C, H, W) → (B, classes)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.groups(F.gelu(self.whiten(x)))  # (B, W_3, H', W')
        return self.head(h.amax(dim=(2, 3))) * self.config.output_scale  # (B, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.whitened):
            self.init_whitening(x)
        if self.training or self.tta == "none":
            return self.logits(x)
        mirrored = 0.5 * (self.logits(x) + self.logits(x.flip(-1)))  # (B, classes)
        if self.tta == "flip":
            return mirrored
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
        shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]  # up-left, down-right by 1 pixel
        moved = sum(0.5 * (self.logits(s) + self.logits(s.flip(-1))) for s in shifted) / 2
        return 0.5 * mirrored + 0.5 * moved
