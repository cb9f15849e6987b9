"""The one-layer Transformer Nanda et al. 2023 reverse-engineered on modular addition.

Nanda, Chan, Lieberum, Smith, Steinhardt 2023, "Progress measures for grokking via mechanistic
interpretability" (arXiv 2301.05217), §3: one layer, d = 128, 4 heads of 32, an MLP of 512 ReLU
units, no LayerNorm, untied embed and unembed. Power et al. 2022 used two layers; one suffices and
is the model whose embedding has the Fourier structure measured in :mod:`.fourier`.

For an input [a, b, "="] (B, 3)::

    x₀ = W_E[tokens] + W_pos                      (B, 3, d)   embedding + learned positions
    x₁ = x₀ + Attn(x₀)                            (B, 3, d)   4 causal heads (layer 4's attention)
    h  = x₁[:, "="]                               (B, d)      the answer is read at "="
    h' = h + W_out ReLU(W_in h + b_in) + b_out    (B, d)      the MLP
    logits = h' W_U                               (B, p)      one logit per residue

Only the "=" position's output is read, and with one layer nothing from the MLP at the other
positions can reach it, so the MLP runs on that position alone (the same logits, a third of the
MLP's work). No LayerNorm: the residual stream is a plain sum of the parts, which is what makes
the embedding W_E directly readable. Init (Nanda et al.): every matrix N(0, 1/d), biases 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from layer4_architectures.sequence.attention import SelfAttention

SEQ_LEN = 3  # [a, b, "="]


@dataclass(frozen=True)
class GrokConfig:
    """The model's sizes; ``p`` residues give a vocabulary of p + 1 ("=" is token p)."""

    p: int = 113
    d_model: int = 128
    n_head: int = 4
    d_mlp: int = 512

    def __post_init__(self) -> None:
        for name in ("p", "d_model", "n_head", "d_mlp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GrokConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"GrokConfig.d_model={self.d_model} must be divisible by n_head={self.n_head}"
            )


class GrokkingTransformer(nn.Module):
    """``GrokkingTransformer(p, d_model, n_head, d_mlp)``; forward(x (B, 3)) -> logits (B, p)."""

    def __init__(self, p: int = 113, d_model: int = 128, n_head: int = 4, d_mlp: int = 512) -> None:
        super().__init__()
        self.config = cfg = GrokConfig(p, d_model, n_head, d_mlp)
        self.embed = nn.Embedding(cfg.p + 1, cfg.d_model)  # W_E (p + 1, d)
        self.pos = nn.Parameter(torch.zeros(SEQ_LEN, cfg.d_model))  # W_pos (3, d)
        self.attn = SelfAttention(cfg.d_model, cfg.n_head, causal=True, bias=False)
        # layer 4's MLP offers GELU and SwiGLU; the paper's mechanism is read off ReLU units
        self.mlp_in = nn.Linear(cfg.d_model, cfg.d_mlp)  # W_in, b_in
        self.mlp_out = nn.Linear(cfg.d_mlp, cfg.d_model)  # W_out, b_out
        self.unembed = nn.Linear(cfg.d_model, cfg.p, bias=False)  # W_U
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Nanda et al.'s init: matrices N(0, 1/d), biases zero."""
        std = 1.0 / math.sqrt(self.config.d_model)
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            else:
                nn.init.normal_(param, mean=0.0, std=std)

    @property
    def token_embedding(self) -> torch.Tensor:
        """W_E restricted to the p residues (p, d): the matrix the Fourier analysis reads."""
        return self.embed.weight[: self.config.p]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != SEQ_LEN:
            raise ValueError(f"expected inputs [a, b, '='] of shape (B, 3), got {tuple(x.shape)}")
        # embedding: tokens plus learned positions
        resid = self.embed(x) + self.pos  # (B, 3, d)
        # attention: the "=" query gathers a and b
        resid = resid + self.attn(resid)  # (B, 3, d)
        # MLP at the answer position
        h = resid[:, -1]  # (B, d)
        h = h + self.mlp_out(F.relu(self.mlp_in(h)))  # (B, d)
        # unembed: one logit per residue
        return self.unembed(h)  # (B, p)
