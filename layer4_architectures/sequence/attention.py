"""Multi-head self-attention (causal or bidirectional) and its KV cache.

Vaswani et al. 2017, "Attention Is All You Need"; the layout follows nanoGPT.

For x (B, T, C) with H heads of size d = C/H:

    [Q, K, V] = x W_qkv (+ b)                        (B, T, 3C) -> three (B, H, T, d)
    Q, K ← RoPE(Q), RoPE(K)                          (when the model uses rotary positions)
    A = softmax(Q Kᵀ / √d + M)                       (B, H, T, T_k), M = 0 or −∞
    y = concat_h(A V) W_o (+ b)                      (B, T, C)

The causal mask lets the query at position t attend to keys s ≤ t (M_ts = −∞ for s > t).
``F.scaled_dot_product_attention`` computes the same thing with a fused kernel; the explicit
path (:func:`masked_softmax_attention`) materialises A, and is used when ``need_weights`` is
set so that ``last_attention`` (B, H, T, T_k) can be inspected and plotted (e.g. to find an
induction head).

KV cache. At generation time step t only adds one query; the keys and values of the earlier
tokens do not change (causal attention, fixed weights), so each layer keeps them in a buffer
preallocated to (B, H, block_size, d) and appends the new ones: a step costs O(T·d) attention
work instead of recomputing the whole prefix, O(T²·d). The query of the new token at
position ``offset`` + j attends to keys s ≤ ``offset`` + j (a mask aligned to the bottom
right, which is why ``is_causal`` is only used when nothing is cached yet).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from layer4_architectures.sequence.rope import RotaryEmbedding


class LayerKV:
    """One layer's cache: keys and values (B, H, max_len, d) and how many positions are filled."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k, self.v = k, v
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def append(self, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k_new, v_new (B, H, T, d) after the cached ones; return all (B, H, length, d)."""
        start, end = self.length, self.length + k_new.shape[2]
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: {start} cached + {k_new.shape[2]} new positions exceed "
                f"max_len={self.max_len}"
            )
        self.k[:, :, start:end] = k_new
        self.v[:, :, start:end] = v_new
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class KVCache:
    """Preallocated keys and values for every layer of a model: ``cache[i]`` is layer i's."""

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (batch_size, n_head, max_len, head_dim)
        self.layers = [
            LayerKV(
                torch.zeros(shape, device=device, dtype=dtype),
                torch.zeros(shape, device=device, dtype=dtype),
            )
            for _ in range(n_layer)
        ]

    def __getitem__(self, i: int) -> LayerKV:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def length(self) -> int:
        """Number of positions cached (the position of the next token)."""
        return self.layers[0].length

    @property
    def max_len(self) -> int:
        return self.layers[0].max_len

    def reset(self) -> None:
        for layer in self.layers:
            layer.length = 0


def causal_mask(t_q: int, t_k: int, device: torch.device | None = None) -> torch.Tensor:
    """Bool (t_q, t_k), True = may attend: the t_q queries are the last t_q of the t_k positions."""
    offset = t_k - t_q
    q_pos = torch.arange(t_q, device=device)[:, None] + offset  # (t_q, 1)
    k_pos = torch.arange(t_k, device=device)[None, :]  # (1, t_k)
    return k_pos <= q_pos


def masked_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ/√d + M) V written out; q (B, H, T, d), k, v (B, H, T_k, d), mask bool
    broadcastable to (B, H, T, T_k) with True = may attend. Returns (out (B, H, T, d),
    weights (B, H, T, T_k), before dropout)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, H, T, T_k)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights  # (B, H, T, d)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, optional RoPE and KV cache.

    forward(x (B, T, C), rope=None, cache=None, attn_mask=None) -> (B, T, C). ``attn_mask``
    is bool broadcastable to (B, H, T, T_k), True = may attend (torch's convention, e.g. a
    padding mask ``~pad[:, None, None, :]``); with ``causal`` it is combined with the causal mask.
    Set ``need_weights = True`` to take the explicit softmax path and keep the attention
    weights of the last call in ``last_attention`` (B, H, T, T_k), detached.
    """

    def __init__(
        self, n_embd: int, n_head: int, *, causal: bool = True, bias: bool = False,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        if n_head < 1 or n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.n_embd, self.n_head, self.head_dim = n_embd, n_head, n_embd // n_head
        self.causal, self.dropout = causal, dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.out_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.need_weights = False
        self.last_attention: torch.Tensor | None = None

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_head, self.head_dim)  # (B, T, 3, H, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # three (B, H, T, d)
        return q, k, v

    def _mask(self, t_q: int, t_k: int, attn_mask: torch.Tensor | None, device) -> torch.Tensor:
        """The combined bool mask, or None when every query may see every key."""
        mask = attn_mask
        if self.causal and t_q > 1:
            causal = causal_mask(t_q, t_k, device)
            mask = causal if mask is None else mask & causal
        return mask

    def forward(
        self,
        x: torch.Tensor,
        rope: RotaryEmbedding | None = None,
        cache: LayerKV | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, t, c = x.shape  # (B, T, C)
        q, k, v = self._heads(x)  # (B, H, T, d)
        offset = 0 if cache is None else cache.length
        if rope is not None:
            q, k = rope(q, offset), rope(k, offset)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T_k, d), T_k = offset + T
        t_k = k.shape[2]
        dropout_p = self.dropout if self.training else 0.0
        if self.need_weights:
            mask = self._mask(t, t_k, attn_mask, x.device)
            y, weights = masked_softmax_attention(q, k, v, mask, dropout_p)
            self.last_attention = weights.detach()
        elif attn_mask is None and (t_k == t or not self.causal):
            # nothing cached before these tokens: the fused kernel's own (top-left) causal mask
            # (a plain bool, also for T = 1, so torch.export can trace a dynamic length)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=self.causal)
        else:
            mask = self._mask(t, t_k, attn_mask, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        return self.resid_dropout(self.out_proj(y))
