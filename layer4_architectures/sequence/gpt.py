"""GPT: a decoder-only Transformer language model (nanoGPT's layout, modern parts).

Radford et al. 2019 (GPT-2) for the layout and init; Su et al. 2021 (RoPE); Zhang & Sennrich
2019 (RMSNorm); Shazeer 2020 (SwiGLU).

For ids (B, T), the logits (B, T, V) of the next token at every position:

    h⁰ = E[idx] (+ P[pos] for learned / sinusoidal positions)                  (B, T, C)
    hˡ = hˡ⁻¹ + Attn(Norm(hˡ⁻¹))          pre-norm residual blocks, l = 1 … L
    hˡ = hˡ + MLP(Norm(hˡ))
    logits = Norm(hᴸ) Eᵀ                  weight tying: the unembedding is the embedding

    RMSNorm(x) = x / √(mean(x²) + ε) · g
    SwiGLU(x) = W₂ (SiLU(W₁ x) ⊙ W₃ x),  d_ff = 8/3·C rounded up to a multiple of 32
    GELU MLP(x) = W₂ GELU(W₁ x),          d_ff = 4·C

Attention is causal (``causal=False`` gives the bidirectional encoder block BERT reuses);
positions are ``pos`` = "rope" (rotary, inside attention), "learned" (a table P of
block_size rows), "sinusoidal" (Vaswani et al.'s fixed table) or "none" (a causal model can
still infer position from the mask).

Init (GPT-2): every weight N(0, 0.02), biases 0; the two projections that write into the
residual stream (attention's ``out_proj``, the MLP's ``out_proj``) N(0, 0.02/√(2L)), so the
variance the 2L residual additions accumulate stays O(1) as depth grows.

``generate`` prefills the prompt into a :class:`~.attention.KVCache` and then feeds one token per
step; without the cache (or when the cache is full) each step re-runs the last block_size
tokens. ``forward`` refuses T > block_size: with learned positions no table row exists for
it, and every position encoding here is sized to block_size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from layer4_architectures.sequence.attention import KVCache, LayerKV, SelfAttention
from layer4_architectures.sequence.rope import RotaryEmbedding
from layer4_architectures.sequence.sampling import sample_next

POSITIONS = ("rope", "learned", "sinusoidal", "none")
MLPS = ("swiglu", "gelu")
NORMS = ("rmsnorm", "layernorm")


@dataclass
class GPTConfig:
    """Every size and choice of a GPT; ``__post_init__`` refuses ones that cannot build."""

    vocab_size: int
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    d_ff: int | None = None
    mlp: str = "swiglu"
    pos: str = "rope"
    norm: str = "rmsnorm"
    dropout: float = 0.0
    bias: bool = False
    tie_weights: bool = True
    causal: bool = True
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        for name, allowed in (("mlp", MLPS), ("pos", POSITIONS), ("norm", NORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"GPTConfig.{name}={getattr(self, name)!r}: expected one of {allowed}"
                )
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}"
            )
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(
                f"GPTConfig.n_embd/n_head = head_dim {self.head_dim} must be even for pos='rope'"
            )
        if self.pos == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"GPTConfig.n_embd={self.n_embd} must be even for pos='sinusoidal'")
        if self.d_ff is not None and (not isinstance(self.d_ff, int) or self.d_ff < 1):
            raise ValueError(f"GPTConfig.d_ff must be a positive int or None, got {self.d_ff!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_dim(self) -> int:
        """The MLP width: d_ff, or the default for the MLP kind."""
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == "gelu":
            return 4 * self.n_embd
        return 32 * math.ceil(8 * self.n_embd / 3 / 32)


class RMSNorm(nn.Module):
    """x / √(mean(x²) + ε) · g over the last dimension; no mean subtraction, no bias."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16 is normalised in fp32
        rms = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., 1)
        return (xf * rms).type_as(x) * self.weight


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.n_embd)
    return nn.LayerNorm(cfg.n_embd, bias=cfg.bias)


class MLP(nn.Module):
    """The position-wise feed-forward: SwiGLU W₂(SiLU(W₁x) ⊙ W₃x) or GELU W₂ GELU(W₁x)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        hidden = cfg.hidden_dim
        self.gated = cfg.mlp == "swiglu"
        self.up = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)  # W₁
        self.gate = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias) if self.gated else None  # W₃
        self.out_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)  # W₂
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            h = F.silu(self.up(x)) * self.gate(x)  # (B, T, d_ff)
        else:
            h = F.gelu(self.up(x))  # (B, T, d_ff)
        return self.dropout(self.out_proj(h))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm Transformer block: x + Attn(Norm x), then + MLP(Norm x)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.norm1 = make_norm(cfg)
        self.attn = SelfAttention(
            cfg.n_embd, cfg.n_head, causal=cfg.causal, bias=cfg.bias, dropout=cfg.dropout
        )
        self.norm2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: torch.Tensor,
        rope: RotaryEmbedding | None = None,
        cache: LayerKV | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, cache, attn_mask)  # (B, T, C)
        return x + self.mlp(self.norm2(x))  # (B, T, C)


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """Vaswani et al.'s P[m, 2i] = sin(m / 10000^(2i/C)), P[m, 2i+1] = cos(…); (T_max, C)."""
    m = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (T_max, 1)
    inv = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (C/2,)
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(m * inv)
    table[:, 1::2] = torch.cos(m * inv)
    return table.float()


class GPT(nn.Module):
    """The decoder: ``GPT(vocab_size, **GPTConfig fields)``; forward(idx (B, T)) -> (B, T, V)."""

    def __init__(self, vocab_size: int, **kwargs) -> None:
        super().__init__()
        known = {f.name for f in fields(GPTConfig)} - {"vocab_size"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"GPT got unknown config fields {unknown}; known: {sorted(known)}")
        self.config = cfg = GPTConfig(vocab_size=vocab_size, **kwargs)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        if cfg.pos == "sinusoidal":
            table = sinusoidal_table(cfg.block_size, cfg.n_embd)
            self.register_buffer("pos_table", table, persistent=False)
        rope = cfg.pos == "rope"
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.block_size, cfg.rope_theta) if rope else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * cfg.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("out_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters (a tied matrix counted once). ``non_embedding`` drops the lookup tables:
        the learned position table, and the token embedding unless it is tied to the unembedding
        (then it is the output matmul's weight, nanoGPT's convention, and stays)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
            if not self.config.tie_weights:
                n -= self.tok_emb.weight.numel()
        return n

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KV cache for this model, block_size positions long."""
        cfg, weight = self.config, self.lm_head.weight
        return KVCache(
            cfg.n_layer, batch_size, cfg.n_head, cfg.block_size, cfg.head_dim,
            device=weight.device, dtype=dtype or weight.dtype,
        )  # fmt: skip

    def _embed(self, idx: torch.Tensor, offset: int) -> torch.Tensor:
        x = self.tok_emb(idx)  # (B, T, C)
        t = idx.shape[1]
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(offset, offset + t, device=idx.device))
        elif self.config.pos == "sinusoidal":
            x = x + self.pos_table[offset : offset + t].to(x.dtype)
        return self.drop(x)

    def forward(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """idx (B, T) int64 -> logits (B, T, V); with ``cache``, idx continues the cached ids."""
        if idx.dim() != 2:
            raise ValueError(f"GPT expects idx of shape (B, T), got {tuple(idx.shape)}")
        t, offset = idx.shape[1], 0 if cache is None else cache.length
        if t == 0:
            raise ValueError("GPT got an empty sequence (T=0)")
        if offset + t > self.config.block_size:
            raise ValueError(
                f"sequence length {offset + t} (T={t}, cached {offset}) exceeds "
                f"block_size={self.config.block_size}"
            )
        x = self._embed(idx, offset)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, self.rope, None if cache is None else cache[i], attn_mask)
        return self.lm_head(self.norm_f(x))  # (B, T, V)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        seed: int | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Continue prompts idx (B, T0) by up to max_new_tokens sampled ids -> (B, T0 + n).

        A row that emits ``eos_id`` keeps emitting it; generation stops early when every row
        has. ``seed`` makes the samples reproducible (a private torch.Generator); temperature 0
        is greedy. The model is put in eval mode for the call and restored afterwards.
        """
        self._check_prompt(idx, max_new_tokens)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=idx.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        try:
            return self._decode(
                idx, max_new_tokens, eos_id, use_cache,
                lambda logits: sample_next(logits, temperature, top_k, top_p, generator),
            )  # fmt: skip
        finally:
            self.train(was_training)

    def _check_prompt(self, idx: torch.Tensor, max_new_tokens: int) -> None:
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(
                f"generate needs a non-empty prompt of shape (B, T0), got {tuple(idx.shape)}"
            )
        if idx.shape[1] > self.config.block_size:
            raise ValueError(
                f"prompt length {idx.shape[1]} exceeds block_size={self.config.block_size}"
            )
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")

    def _decode(self, idx, max_new_tokens, eos_id, use_cache, pick) -> torch.Tensor:
        """The generation loop: prefill once, then one token per step (cached or cropped)."""
        block = self.config.block_size
        cache = self.new_cache(idx.shape[0]) if use_cache else None
        finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        out = idx
        step_input = idx  # what the cache has not seen yet
        for _ in range(max_new_tokens):
            if cache is not None and cache.length + step_input.shape[1] > block:
                cache = None  # full: fall back to re-running the cropped context
            if cache is None:
                logits = self(out[:, -block:])[:, -1]  # (B, V)
            else:
                logits = self(step_input, cache)[:, -1]  # (B, V)
            nxt = pick(logits)  # (B,)
            if eos_id is not None:
                nxt = torch.where(finished, torch.full_like(nxt, eos_id), nxt)
                finished |= nxt == eos_id
            out = torch.cat((out, nxt[:, None]), dim=1)
            step_input = nxt[:, None]
            if eos_id is not None and bool(finished.all()):
                break
        return out


def decay_groups(model: nn.Module | Iterable[nn.Parameter], weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices (dim ≥ 2: linears, embeddings), none on
    vectors (norm gains, biases). ``model`` is a module or its parameters; a tied matrix appears
    once; frozen parameters are left out."""
    params = model.parameters() if isinstance(model, nn.Module) else model
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
