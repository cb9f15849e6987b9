"""The denoiser of a diffusion model: a small U-Net ε_θ(x_t, t, y) for 28×28 images.

Ho et al. (2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239) predict the noise
ε of ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` with a PixelCNN++-style U-Net; this is that network
scaled down for MNIST:

- **Time embedding.** The integer timestep becomes sinusoidal features, as a transformer's
  positions do, ``emb(t)_i = sin(t ω_i)`` and ``cos(t ω_i)`` with ``ω_i = 10000^{−i/(d/2)}``,
  then an MLP ``Linear → SiLU → Linear``. Every residual block adds its own linear projection of
  it to its feature map (one bias per channel), so every layer knows the noise level.
- **Class embedding (optional).** ``nn.Embedding(num_classes + 1, d)`` added to the time
  embedding; index ``num_classes`` is the *null* class (no label), which classifier-free
  guidance needs: the same network is then also the unconditional denoiser.
- **Residual block.** ``h = conv(SiLU(GN(x))) + proj(emb)``, ``h = conv(dropout(SiLU(GN(h))))``,
  ``out = h + skip(x)`` (a 1×1 conv when the channel count changes); GroupNorm, not BatchNorm,
  because the statistics of a batch mix noise levels.
- **Resolutions.** ``image_size → /2 → /4`` (28 → 14 → 7): a stride-2 conv down, nearest
  upsampling + conv up, and at each level the down path's activations are concatenated to the up
  path's (the skip connections). Self-attention (layer 3's ``MultiHeadAttention`` port over the
  H·W positions) sits at the lowest resolution, 7×7 = 49 tokens, where it is cheap.

The output has the input's shape: the predicted ε. The diffusion schedule's name and length
``T`` are part of the config (``schedule``, ``timesteps``): they do not change the network, but
they travel in its checkpoint so a sampler can refuse a denoiser trained for another schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework.ports import MultiHeadAttention


@dataclass
class UNetConfig:
    """The U-Net's sizes; ``num_classes=0`` builds an unconditional model."""

    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    base_channels: int = 32
    channel_mults: Sequence[int] = field(default_factory=lambda: (1, 2, 2))
    groups: int = 8
    heads: int = 4
    dropout: float = 0.0
    schedule: str = "linear"
    timesteps: int = 1000

    def __post_init__(self) -> None:
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        for key in ("in_channels", "base_channels", "groups", "heads", "timesteps"):
            if getattr(self, key) < 1:
                raise ValueError(f"UNetConfig.{key} must be >= 1, got {getattr(self, key)}")
        if self.num_classes < 0:
            raise ValueError(f"UNetConfig.num_classes must be >= 0, got {self.num_classes}")
        if len(self.channel_mults) != 3 or min(self.channel_mults) < 1:
            raise ValueError(
                "UNetConfig.channel_mults must be 3 positive multipliers (one per resolution "
                f"image_size, /2, /4), got {list(self.channel_mults)}"
            )
        if self.image_size < 4 or self.image_size % 4:
            raise ValueError(
                f"UNetConfig.image_size must be a multiple of 4 (two halvings), got "
                f"{self.image_size}"
            )
        for width in self.widths:
            if width % self.groups:
                raise ValueError(
                    f"UNetConfig.groups={self.groups} must divide every level's channels "
                    f"{list(self.widths)} (base_channels={self.base_channels} x channel_mults)"
                )
        if self.widths[-1] % self.heads:
            raise ValueError(
                f"UNetConfig.heads={self.heads} must divide the attention level's channels "
                f"{self.widths[-1]}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def emb_dim(self) -> int:
        return 4 * self.base_channels


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of integer timesteps: (B,) -> (B, dim), [sin(t ω), cos(t ω)]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)  # (d/2,)
    angles = t.float()[:, None] * freqs[None]  # (B, d/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, d)


class ResBlock(nn.Module):
    """GN → SiLU → conv, + the embedding's per-channel bias, GN → SiLU → dropout → conv, + skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # the noise level (and class), per channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class AttentionBlock(nn.Module):
    """Pre-norm self-attention over the H·W positions of a feature map, residual."""

    def __init__(self, channels: int, groups: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = MultiHeadAttention(channels, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H·W, C)
        out = self.attn(tokens)  # (B, H·W, C)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    """ε_θ(x_t, t, y): (B, C, H, W), (B,) int timesteps, (B,) int classes or None -> (B, C, H, W).

    ``y=None`` (or entries equal to ``num_classes``) is the null class. See the module docstring.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        groups: int = 8,
        heads: int = 4,
        dropout: float = 0.0,
        schedule: str = "linear",
        timesteps: int = 1000,
    ) -> None:
        super().__init__()
        cfg = UNetConfig(
            in_channels, image_size, num_classes, base_channels, channel_mults, groups, heads,
            dropout, schedule, timesteps,
        )  # fmt: skip
        self.config = cfg
        c1, c2, c3 = cfg.widths
        d, g, p = cfg.emb_dim, cfg.groups, cfg.dropout
        self.time_mlp = nn.Sequential(nn.Linear(cfg.base_channels, d), nn.SiLU(), nn.Linear(d, d))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, d) if cfg.num_classes else None
        self.stem = nn.Conv2d(cfg.in_channels, c1, 3, padding=1)
        # down: 28 (c1) -> 14 (c2) -> 7 (c3)
        self.down1 = ResBlock(c1, c1, d, g, p)
        self.pool1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.down2 = ResBlock(c1, c2, d, g, p)
        self.pool2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.down3 = ResBlock(c2, c3, d, g, p)
        # the bottleneck at 7x7, with self-attention
        self.mid1 = ResBlock(c3, c3, d, g, p)
        self.mid_attn = AttentionBlock(c3, g, cfg.heads)
        self.mid2 = ResBlock(c3, c3, d, g, p)
        # up: 7 -> 14 -> 28, each level concatenating the down path's activations
        self.up3 = ResBlock(c3 + c3, c3, d, g, p)
        self.unpool2 = nn.Conv2d(c3, c2, 3, padding=1)
        self.up2 = ResBlock(c2 + c2, c2, d, g, p)
        self.unpool1 = nn.Conv2d(c2, c1, 3, padding=1)
        self.up1 = ResBlock(c1 + c1, c1, d, g, p)
        self.out_norm = nn.GroupNorm(g, c1)
        self.out = nn.Conv2d(c1, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # ε̂ = 0 at initialisation: a calm first loss
        nn.init.zeros_(self.out.bias)

    def embedding(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The (B, emb_dim) vector every block adds: time MLP, plus the class's (null if None)."""
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))  # (B, d)
        if self.class_emb is None:
            return emb
        if y is None:
            y = torch.full_like(t, self.config.num_classes)
        if y.shape != t.shape:
            raise ValueError(f"class labels have shape {tuple(y.shape)}, expected {tuple(t.shape)}")
        return emb + self.class_emb(y)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 4 or x.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"UNet expects (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}) "
                f"images, got {tuple(x.shape)}"
            )
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        emb = self.embedding(t, y)  # (B, d)
        h1 = self.down1(self.stem(x), emb)  # (B, c1, 28, 28)
        h2 = self.down2(self.pool1(h1), emb)  # (B, c2, 14, 14)
        h3 = self.down3(self.pool2(h2), emb)  # (B, c3, 7, 7)
        h = self.mid2(self.mid_attn(self.mid1(h3, emb)), emb)  # (B, c3, 7, 7)
        h = self.up3(torch.cat([h, h3], dim=1), emb)  # (B, c3, 7, 7)
        h = self.unpool2(F.interpolate(h, scale_factor=2.0, mode="nearest"))  # (B, c2, 14, 14)
        h = self.up2(torch.cat([h, h2], dim=1), emb)
        h = self.unpool1(F.interpolate(h, scale_factor=2.0, mode="nearest"))  # (B, c1, 28, 28)
        h = self.up1(torch.cat([h, h1], dim=1), emb)
        return self.out(F.silu(self.out_norm(h)))  # (B, C, 28, 28): the predicted ε
