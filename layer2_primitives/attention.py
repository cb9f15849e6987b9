"""Scaled dot-product attention and multi-head attention (Vaswani et al., 2017).

For queries q (..., T_q, d), keys k (..., T_k, d) and values v (..., T_k, d_v):

    S = q k^T / sqrt(d)                        (..., T_q, T_k) scores
    S[mask == False] = -inf                    bool mask, True = "may attend" (torch)
    P = softmax(S, axis=-1)                    attention weights, each row sums to 1
    O = P v                                    (..., T_q, d_v)

A causal mask keeps key j <= query i (lower triangle, aligned top-left like torch's is_causal).
A FULLY MASKED ROW (a query that may attend to nothing, e.g. a padding query) has no softmax;
we define its weights as all zeros, so its output is the zero vector and no gradient flows
through it. PyTorch's CPU kernel returns the same zeros (tests check this against it).

Backward, fused (never materialising the softmax Jacobian), with dO = dL/dO:
    dv = P^T dO,   dP = dO v^T,   dS = P * (dP - rowsum(dP * P)),
    dq = dS k / sqrt(d),   dk = dS^T q / sqrt(d).

Multi-head attention projects the inputs with four Linear layers (q_proj, k_proj, v_proj,
out_proj; weight (E, E), bias (E,) each), splits E into h heads of E/h, attends in every head in
parallel and concatenates:

    MHA(x_q, x_k, x_v) = out_proj(concat_h softmax(Q_h K_h^T / sqrt(E/h) + mask) V_h)

with shapes (B, T, E) -> (B, h, T, E/h) -> (B, T, E). key_padding_mask (B, T_k) marks PADDED
keys with True (torch's nn.MultiheadAttention convention); they get no attention weight.
"""

from __future__ import annotations

import numpy as np

from layer1_autograd import Linear, Module, Tensor, unbroadcast
from layer2_primitives._util import check_dtypes, check_tensor


def _check_mask(mask: np.ndarray, scores_shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array (True = attend), got dtype {mask.dtype}")
    try:
        broadcast = np.broadcast_shapes(mask.shape, scores_shape)
    except ValueError:
        broadcast = None
    if broadcast != scores_shape:
        raise ValueError(
            f"{name} of shape {mask.shape} does not broadcast to the attention scores "
            f"(..., T_q, T_k) = {scores_shape}"
        )
    return mask


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: np.ndarray | None = None,
    is_causal: bool = False,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, np.ndarray]:
    """softmax(q k^T / sqrt(d) | mask) v as one op; optionally also the weights P (an ndarray).

    q (..., T_q, d), k (..., T_k, d), v (..., T_k, d_v) -> (..., T_q, d_v). attn_mask: bool,
    broadcastable to (..., T_q, T_k), True = attend. Fully masked rows give zeros.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(t, f"attention {name}")
        if t.ndim < 2:
            raise ValueError(f"attention {name} must be (..., T, d), got {t.shape}")
    check_dtypes(q, k, v)
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"attention shapes q {q.shape}, k {k.shape}, v {v.shape}: need q (..., T_q, d), "
            "k (..., T_k, d), v (..., T_k, d_v)"
        )
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / float(np.sqrt(q.shape[-1]))  # a Python float keeps float32 float32
    scores = (q.data @ np.swapaxes(k.data, -1, -2)) * scale  # (..., T_q, T_k)
    mask = None
    if attn_mask is not None:
        mask = _check_mask(attn_mask, scores.shape, "attn_mask")
    if is_causal:
        causal = np.tril(np.ones((t_q, t_k), dtype=bool))
        mask = causal if mask is None else mask & causal
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # fully masked row: avoid inf - inf
    e = np.exp(scores - row_max)
    denom = e.sum(axis=-1, keepdims=True)
    p = e / np.where(denom > 0, denom, 1.0)  # fully masked row -> all-zero weights
    out = p @ v.data

    def backward(grad: np.ndarray) -> list[np.ndarray | None]:
        # q, k, v may broadcast against each other over the batch axes: unbroadcast sums back.
        dp = grad @ np.swapaxes(v.data, -1, -2)  # (..., T_q, T_k)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        return [
            unbroadcast(ds @ k.data * scale, q.shape) if q.requires_grad else None,
            unbroadcast(np.swapaxes(ds, -1, -2) @ q.data * scale, k.shape)
            if k.requires_grad
            else None,
            unbroadcast(np.swapaxes(p, -1, -2) @ grad, v.shape) if v.requires_grad else None,
        ]

    result = Tensor.from_op(out, [q, k, v], backward, name="attention")
    return (result, p) if return_weights else result


class MultiHeadAttention(Module):
    """Multi-head attention with separate q_proj, k_proj, v_proj, out_proj Linear(E, E) layers.

    forward(query (B, T_q, E), key (B, T_k, E) = query, value (B, T_k, E) = key, *,
    key_padding_mask (B, T_k) bool True = pad, attn_mask bool broadcastable to (B, h, T_q, T_k)
    True = attend, is_causal) -> (B, T_q, E); with need_weights also the weights (B, h, T_q, T_k).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        bias: bool = True,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim, bias, rng=rng, dtype=dtype)
        self.k_proj = Linear(embed_dim, embed_dim, bias, rng=rng, dtype=dtype)
        self.v_proj = Linear(embed_dim, embed_dim, bias, rng=rng, dtype=dtype)
        self.out_proj = Linear(embed_dim, embed_dim, bias, rng=rng, dtype=dtype)

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape  # (B, T, E) -> (B, h, T, E/h)
        return x.reshape(b, t, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        key_padding_mask: np.ndarray | None = None,
        attn_mask: np.ndarray | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, np.ndarray]:
        key = query if key is None else key
        value = key if value is None else value
        for name, t in (("query", query), ("key", key), ("value", value)):
            check_tensor(t, f"MultiHeadAttention {name}", 3)
            if t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"MultiHeadAttention {name} {t.shape} must end in embed_dim={self.embed_dim}"
                )
        b, t_q, _ = query.shape
        t_k = key.shape[1]
        if value.shape[:2] != key.shape[:2] or key.shape[0] != b:
            raise ValueError(
                f"MultiHeadAttention key {key.shape} / value {value.shape} / query {query.shape} "
                "disagree"
            )
        scores_shape = (b, self.num_heads, t_q, t_k)
        mask = None if attn_mask is None else _check_mask(attn_mask, scores_shape, "attn_mask")
        if key_padding_mask is not None:
            kpm = np.asarray(key_padding_mask)
            if kpm.dtype != np.bool_ or kpm.shape != (b, t_k):
                raise ValueError(
                    f"key_padding_mask must be bool of shape (B, T_k) = {(b, t_k)}, got "
                    f"{kpm.dtype} {kpm.shape}"
                )
            keep = ~kpm[:, None, None, :]
            mask = keep if mask is None else mask & keep
        q = self._split(self.q_proj(query))
        k = self._split(self.k_proj(key))
        v = self._split(self.v_proj(value))
        heads, weights = scaled_dot_product_attention(q, k, v, mask, is_causal, return_weights=True)
        merged = heads.transpose(0, 2, 1, 3).reshape(b, t_q, self.embed_dim)  # (B, T_q, E)
        out = self.out_proj(merged)
        return (out, weights) if need_weights else out
