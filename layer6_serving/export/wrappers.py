"""Export-friendly faces of the three models: plain tensors in, plain tensors out.

An exporter (``torch.onnx.export(dynamo=True)``, ``torch.jit.trace``) records one function of
tensors. Layer 4's models are written for training and for Python callers (a ``KVCache``
object that is mutated in place, ``y=None`` for the null class, normalisation done by the data
pipeline), so each gets a wrapper here that reuses the model's own modules and weights and
exposes only tensors:

- :class:`ClassifierGraph`: pixels x ∈ [0, 1] (N, 3, H, W) → logits (N, K), the normalisation
  (x − μ_c) / σ_c baked in (and the mean over the horizontal mirror when the model was evaluated
  with flip test-time augmentation), so a client sends pixels, not statistics.
- :class:`DenoiserGraph`: ε_θ(x_t, t, y) with y an int64 label where ``num_classes`` is the null
  class (never ``None``).
- :class:`GPTPrefill` and :class:`GPTStep`: the GPT split for generation with a KV cache,

      prefill: ids (B, T), pos (T,)                 → last logits (B, V), K, V (L, B, H, T, d)
      step:    ids (B, 1), pos (1,), K, V (…, P, d) → logits (B, V), K, V (L, B, H, P + 1, d)

  The positions are an input, not ``past.shape``: the rotary angles (or the position table) are
  gathered at ``pos``, so no graph computes with a Python int taken from a shape (which a trace
  would freeze). The runtime passes pos = 0 … T − 1, then P. The new token's query sees every
  cached key, so the step needs no mask; the prefill uses the fused causal kernel.

The wrappers are also what the runtime's eager backend runs for the classifier and the
denoiser, so eager and exported paths differ only in who executes the graph. The GPT's eager
backend runs layer 4's own ``forward`` with its ``KVCache`` instead: the reference the exported
step is checked against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from layer4_architectures.generative.unet import UNet
from layer4_architectures.sequence.gpt import GPT
from layer4_architectures.sequence.rope import apply_rope


class ClassifierGraph(nn.Module):
    """logits = f((x − μ) / σ), x (N, C, H, W) in [0, 1]; with ``flip_tta`` the mean of the
    logits of x and of its mirror (what the classification task evaluated)."""

    def __init__(
        self, model: nn.Module, mean: list[float], std: list[float], flip_tta: bool = False
    ) -> None:
        super().__init__()
        self.model, self.flip_tta = model, flip_tta
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std  # (N, C, H, W)
        logits = self.model(z)  # (N, K)
        if self.flip_tta:
            logits = (logits + self.model(z.flip(-1))) / 2
        return logits


class DenoiserGraph(nn.Module):
    """ε̂ = ε_θ(x_t, t, y): x (N, C, H, W) float, t (N,) int64 in 1..T, y (N,) int64 in
    0..num_classes (num_classes = the null class)."""

    def __init__(self, unet: UNet) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, y)


class _GPTGraph(nn.Module):
    """The GPT's blocks run with explicit positions and explicit past keys/values."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt
        cfg = gpt.config
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim

    def _embed(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        gpt = self.gpt
        x = gpt.tok_emb(ids)  # (B, T, C)
        if gpt.pos_emb is not None:
            x = x + gpt.pos_emb(pos)
        elif gpt.config.pos == "sinusoidal":
            x = x + gpt.pos_table.index_select(0, pos).to(x.dtype)
        return x

    def _heads(self, x: torch.Tensor, block: nn.Module, pos: torch.Tensor) -> tuple:
        """q, k, v (B, H, T, d) of one block's attention, rotated at ``pos`` with RoPE."""
        qkv = block.attn.qkv(x).unflatten(-1, (3, self.n_head, self.head_dim))  # (B, T, 3, H, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # three (B, H, T, d)
        rope = self.gpt.rope
        if rope is not None:
            cos, sin = rope.cos.index_select(0, pos), rope.sin.index_select(0, pos)  # (T, d/2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def _block(self, x, block, pos, past_k, past_v) -> tuple:
        """One pre-norm block; returns (x, k, v) with k, v the keys/values so far."""
        q, k, v = self._heads(block.norm1(x), block, pos)
        if past_k is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, d)
        else:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)  # (B, H, P+1, d)
            y = F.scaled_dot_product_attention(q, k, v)  # one query sees every key
        y = block.attn.out_proj(y.transpose(1, 2).flatten(2))  # (B, T, C)
        x = x + y
        return x + block.mlp(block.norm2(x)), k, v

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.gpt.lm_head(self.gpt.norm_f(x[:, -1]))  # (B, V)


class GPTPrefill(_GPTGraph):
    """ids (B, T) int64, pos (T,) int64 -> logits of the last position (B, V) and the keys and
    values of every layer (L, B, H, T, d) x 2."""

    def forward(self, ids: torch.Tensor, pos: torch.Tensor) -> tuple:
        x = self._embed(ids, pos)
        keys, values = [], []
        for block in self.gpt.blocks:
            x, k, v = self._block(x, block, pos, None, None)
            keys.append(k)
            values.append(v)
        return self._logits(x), torch.stack(keys), torch.stack(values)


class GPTStep(_GPTGraph):
    """ids (B, 1) int64, pos (1,) int64 (= P), past keys and values (L, B, H, P, d) -> logits
    (B, V) and the keys and values with the new position appended (L, B, H, P + 1, d)."""

    def forward(
        self, ids: torch.Tensor, pos: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
    ) -> tuple:
        x = self._embed(ids, pos)
        keys, values = [], []
        for i, block in enumerate(self.gpt.blocks):
            x, k, v = self._block(x, block, pos, past_k[i], past_v[i])
            keys.append(k)
            values.append(v)
        return self._logits(x), torch.stack(keys), torch.stack(values)
