"""A mixture-of-experts feed-forward layer: Switch (top-1) and top-2 routing with capacity.

Shazeer et al. 2017 (sparsely-gated MoE); Lepikhin et al. 2020 (GShard, top-2, capacity);
Fedus et al. 2021 (Switch Transformer, top-1, the balancing loss); Zoph et al. 2022 (ST-MoE,
the router z-loss).

**Conditional computation.** A dense FFN applies the same weights to every token. An MoE layer
holds E expert FFNs and a router that sends each token to k of them (k = 1: Switch, k = 2:
GShard), so the parameters grow with E while the compute per token stays that of k FFNs::

    z = W_r x                       router logits (E,), computed in fp32 (autocast off)
    p = softmax(z)                  router probabilities
    S = top-k indices of p          the experts this token is sent to
    g_e = p_e                       k = 1 (Switch: the output is scaled by the router prob)
    g_e = p_e / Σ_{j∈S} p_j         k = 2 (the two combine weights renormalised to sum to 1)
    y = Σ_{e∈S} g_e · FFN_e(x)      FFN_e(x) = W₂ᵉ(SiLU(W₁ᵉx) ⊙ W₃ᵉx)  (or W₂ᵉ GELU(W₁ᵉx))

**Capacity and dropping.** For static shapes each expert processes at most
``C = ⌈capacity_factor · k · N / E⌉`` of the batch's N tokens. Assignments are served in priority
order (every token's first choice before any second choice, tokens in batch order within a
choice); an assignment past its expert's C slots is dropped: it contributes nothing, and the
token passes through on the residual connection of the block (``x + MoE(x)`` = x). The fraction
of dropped assignments is reported as ``dropped_fraction``.

**Load balancing.** With ``f_i`` the fraction of the N·k assignments the router sends to expert i
(before dropping) and ``P_i`` the mean router probability of expert i over the tokens::

    L_balance = E · Σ_i f_i · P_i

This is 1 at perfect balance (f_i = P_i = 1/E) and up to E when one expert takes everything;
``f`` is not differentiable, the gradient reaches the router through ``P``. The task adds
``α · L_balance`` with α = 0.01 (Switch). The z-loss ``L_z = mean_tokens (logsumexp z)²`` keeps
the router logits small (exp overflows in low precision otherwise); coefficient ~1e-3.

**Batched experts.** The kept assignments are scattered into a buffer (E, C, d) and all experts
run as three batched matmuls over stacked weights (E, d, f), (E, d, f), (E, f, d) (``torch.bmm``);
the outputs are gathered back and weighted by g with ``index_add_``. No Python loop over tokens or
experts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RouterStats:
    """What one forward pass of an MoE layer reports (scalars are 0-dim tensors)."""

    balance_loss: torch.Tensor  # E · Σ f_i P_i (1 at perfect balance), differentiable in P
    z_loss: torch.Tensor  # mean (logsumexp z)², differentiable
    dropped_fraction: torch.Tensor  # dropped assignments / (N · k), detached
    routed: torch.Tensor  # (E,) assignments the router sent to each expert, detached
    kept: torch.Tensor  # (E,) assignments each expert processed (≤ capacity), detached


def expert_capacity(n_tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> int:
    """``C = ⌈capacity_factor · k · N / E⌉`` slots per expert (at least 1)."""
    return max(1, math.ceil(capacity_factor * top_k * n_tokens / n_experts))


def balance_loss(probs: torch.Tensor, expert_index: torch.Tensor, n_experts: int) -> torch.Tensor:
    """``E · Σ_i f_i · P_i`` for probs (N, E) and the chosen experts (N, k)."""
    counts = F.one_hot(expert_index, n_experts).sum(dim=(0, 1)).float()  # (E,)
    f = counts / expert_index.numel()  # fraction of the N·k assignments
    p_mean = probs.mean(dim=0)  # (E,)
    return n_experts * (f * p_mean).sum()


def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """``mean over tokens of (logsumexp_i z_i)²`` for router logits (N, E)."""
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def dispatch_slots(
    expert_index: torch.Tensor, n_experts: int, capacity: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For assignments (N, k), each one's slot in the (E·C) buffer and whether it is kept.

    Priority: choice rank first (all first choices, then all second choices), token order
    within a rank. An assignment's position in its expert's queue is the number of assignments
    to that expert before it; it is kept iff that position is < capacity.
    """
    order = expert_index.t().reshape(-1)  # (k·N,) rank-major priority order
    onehot = F.one_hot(order, n_experts)  # (k·N, E)
    position = (onehot.cumsum(dim=0) * onehot).sum(dim=-1) - 1  # (k·N,) place in the queue
    keep = position < capacity  # (k·N,)
    slot = order * capacity + position.clamp(max=capacity - 1)  # (k·N,)
    n = expert_index.shape[0]
    k = expert_index.shape[1]
    return slot.view(k, n).t(), keep.view(k, n).t()  # (N, k), (N, k)


class MoEFeedForward(nn.Module):
    """E expert FFNs behind a top-k router; forward(x (..., d)) -> (..., d), stats in ``.stats``.

    ``gated`` (default) makes each expert a SwiGLU FFN, as the GPT's MLP; ``gated=False`` a
    GELU FFN. After each forward, :attr:`stats` holds the :class:`RouterStats` of that pass.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        n_experts: int,
        *,
        top_k: int = 1,
        capacity_factor: float = 1.25,
        gated: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("d_ff", d_ff), ("n_experts", n_experts)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MoEFeedForward.{name} must be a positive int, got {value!r}")
        if top_k not in (1, 2) or top_k > n_experts:
            raise ValueError(
                f"MoEFeedForward.top_k={top_k!r}: expected 1 or 2 and <= n_experts={n_experts}"
            )
        if not capacity_factor > 0:
            raise ValueError(f"MoEFeedForward.capacity_factor must be > 0, got {capacity_factor}")
        self.n_experts, self.top_k, self.capacity_factor = n_experts, top_k, capacity_factor
        self.router = nn.Linear(d_model, n_experts, bias=False)  # W_r
        self.w_up = nn.Parameter(torch.empty(n_experts, d_model, d_ff))  # W₁ per expert
        self.w_gate = nn.Parameter(torch.empty(n_experts, d_model, d_ff)) if gated else None
        self.w_down = nn.Parameter(torch.empty(n_experts, d_ff, d_model))  # W₂ per expert
        self.dropout = nn.Dropout(dropout)
        self.stats: RouterStats | None = None
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02, out_std: float | None = None) -> None:
        """N(0, std) for the router and the experts' input matrices, N(0, out_std) for W₂."""
        nn.init.normal_(self.router.weight, std=std)
        nn.init.normal_(self.w_up, std=std)
        if self.w_gate is not None:
            nn.init.normal_(self.w_gate, std=std)
        nn.init.normal_(self.w_down, std=std if out_std is None else out_std)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router in fp32 for tokens (N, d): logits (N, E), experts (N, k), gates (N, k)."""
        with torch.autocast(x.device.type, enabled=False):
            logits = x.float() @ self.router.weight.float().t()  # (N, E)
            probs = logits.softmax(dim=-1)  # (N, E)
            top_p, top_i = probs.topk(self.top_k, dim=-1)  # (N, k)
            gates = top_p if self.top_k == 1 else top_p / top_p.sum(dim=-1, keepdim=True)
        return logits, top_i, gates

    def experts(self, h: torch.Tensor) -> torch.Tensor:
        """All experts at once on their slots h (E, C, d) -> (E, C, d) (batched matmuls)."""
        up = torch.bmm(h, self.w_up.to(h.dtype))  # (E, C, f)
        if self.w_gate is not None:
            a = F.silu(up) * torch.bmm(h, self.w_gate.to(h.dtype))  # (E, C, f)
        else:
            a = F.gelu(up)  # (E, C, f)
        return torch.bmm(a, self.w_down.to(h.dtype))  # (E, C, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # (N, d)
        n, e = tokens.shape[0], self.n_experts
        logits, top_i, gates = self.route(tokens)  # (N, E), (N, k), (N, k)
        capacity = expert_capacity(n, e, self.top_k, self.capacity_factor)
        slot, keep = dispatch_slots(top_i, e, capacity)  # (N, k), (N, k)
        token_of = torch.arange(n, device=x.device)[:, None].expand_as(slot)  # (N, k)
        kept_slot, kept_token = slot[keep], token_of[keep]  # (M,)
        buffer = tokens.new_zeros(e * capacity, shape[-1])  # (E·C, d)
        buffer[kept_slot] = tokens[kept_token]
        out = self.experts(buffer.view(e, capacity, -1)).reshape(e * capacity, -1)  # (E·C, d)
        weighted = out[kept_slot] * gates[keep][:, None].to(out.dtype)  # (M, d)
        y = torch.zeros_like(tokens).index_add_(0, kept_token, weighted.to(tokens.dtype))
        probs = logits.softmax(dim=-1)  # (N, E) fp32
        self.stats = RouterStats(
            balance_loss=balance_loss(probs, top_i, e),
            z_loss=z_loss(logits),
            dropped_fraction=(1.0 - keep.float().mean()).detach(),
            routed=F.one_hot(top_i, e).sum(dim=(0, 1)).detach(),
            kept=F.one_hot(top_i[keep], e).sum(dim=0).detach(),
        )
        return self.dropout(y).view(shape)  # (..., d)
