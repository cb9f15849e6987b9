"""Rotary position embeddings (RoPE): position as a rotation of each (query, key) pair of features.

Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding".

The head dimension d (even) is split into d/2 consecutive pairs (x_{2i}, x_{2i+1}); the pair
i of the vector at position m is rotated by the angle m·θ_i, with

    θ_i = base^(−2i/d),   i = 0 … d/2 − 1        (base = 10000, ``rope_theta``)

    [x'_{2i}  ]   [cos mθ_i  −sin mθ_i] [x_{2i}  ]
    [x'_{2i+1}] = [sin mθ_i   cos mθ_i] [x_{2i+1}]

Read as complex numbers z_i = x_{2i} + i·x_{2i+1}, that is z'_i = z_i · e^{i m θ_i}. Because
rotations compose, the attention score of a rotated query at m and a rotated key at n is

    ⟨R_m q, R_n k⟩ = Re Σ_i q_i · conj(k_i) · e^{i (m − n) θ_i}

which depends on the positions only through m − n: the encoding is relative, and nothing is
added to the residual stream. It is applied to q and k (never v) after the head split. With a
KV cache the new tokens start at ``offset`` (the number of tokens already cached), so the keys
stored in the cache keep the rotation of their own position.

The cos/sin tables (T_max, d/2) are computed once in float64 and kept as non-persistent
buffers (rebuilt from the config, so they are not in the checkpoint).
"""

from __future__ import annotations

import torch
from torch import nn


def rope_angles(head_dim: int, n_positions: int, theta: float = 10000.0) -> torch.Tensor:
    """The angles m·θ_i, float64, shape (n_positions, head_dim/2)."""
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE needs an even, positive head_dim, got head_dim={head_dim}")
    if theta <= 0:
        raise ValueError(f"rope_theta must be positive, got rope_theta={theta}")
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / head_dim)  # (d/2,) θ_i
    m = torch.arange(n_positions, dtype=torch.float64)  # (T_max,)
    return torch.outer(m, inv_freq)  # (T_max, d/2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the consecutive feature pairs of x (..., T, d) by angles with cos, sin (T, d/2)."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., T, d/2, 2)
    x1, x2 = pairs[..., 0], pairs[..., 1]  # (..., T, d/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2)  # (..., T, d)


class RotaryEmbedding(nn.Module):
    """Precomputed RoPE tables for positions 0 … max_len − 1; ``forward(x, offset)`` rotates x."""

    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        angles = rope_angles(head_dim, max_len, theta)  # (T_max, d/2) float64
        self.head_dim, self.max_len = head_dim, max_len
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x (B, H, T, d) at positions offset … offset + T − 1 -> rotated (B, H, T, d)."""
        t = x.shape[-2]
        if offset + t > self.max_len:
            raise ValueError(
                f"RoPE positions up to {offset + t} exceed its table of max_len={self.max_len}"
            )
        return apply_rope(x, self.cos[offset : offset + t], self.sin[offset : offset + t])
