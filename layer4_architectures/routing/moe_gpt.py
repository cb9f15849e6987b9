"""A GPT whose feed-forward layers are mixtures of experts, and its language-model task.

:class:`MoEGPT` is :class:`~layer4_architectures.sequence.gpt.GPT` with the MLP of every
``moe_every``-th block (blocks ``moe_every-1, 2·moe_every-1, …``; 1: all) replaced by a
:class:`~layer4_architectures.routing.moe.MoEFeedForward` of ``n_experts`` experts, each the
width of the dense MLP (``d_ff``, default the GPT's). With top-1 routing the compute and the
parameters *active* per token equal the dense GPT's (plus the router, E·d per layer) while the
total parameters grow by (E − 1) FFNs per MoE layer: the Switch Transformer's trade.

The experts are initialised as the GPT's MLP is (N(0, 0.02), the output matrix W₂ with the
residual scale 0.02/√(2L)). The constructor takes plain keyword arguments, so a checkpoint's
``model_spec`` rebuilds it with :func:`layer3_framework.checkpoint.load_model`.

:class:`MoELM` trains it (layer 3's task protocol)::

    loss = CE + α · Σ_layers L_balance + β · Σ_layers L_z          α = 0.01, β = 1e-3

and logs the cross-entropy, the mean per-layer balance loss (1 at perfect balance), the z-loss,
the dropped fraction and each layer's expert utilisation ``util_l<layer>_e<expert>`` (the share
of the layer's assignments routed to the expert): the trainer averages them per logging window,
so the run's ``metrics.jsonl`` holds the utilisation over training.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from layer3_framework.task import Logs, Sums, Task, cross_entropy_loss
from layer4_architectures.routing.moe import MoEFeedForward, RouterStats
from layer4_architectures.sequence.gpt import GPT


class MoEGPT(GPT):
    """``MoEGPT(vocab_size, n_experts=4, top_k=1, capacity_factor=1.25, moe_every=1, **gpt)``."""

    def __init__(
        self,
        vocab_size: int,
        n_experts: int = 4,
        top_k: int = 1,
        capacity_factor: float = 1.25,
        moe_every: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(vocab_size, **kwargs)
        cfg = self.config
        if not isinstance(moe_every, int) or not 1 <= moe_every <= cfg.n_layer:
            raise ValueError(
                f"MoEGPT.moe_every must be an int in [1, n_layer={cfg.n_layer}], got {moe_every!r}"
            )
        self.moe_every = moe_every
        residual_std = 0.02 / math.sqrt(2 * cfg.n_layer)
        for i, block in enumerate(self.blocks):
            if (i + 1) % moe_every == 0:
                block.mlp = MoEFeedForward(
                    cfg.n_embd, cfg.hidden_dim, n_experts,
                    top_k=top_k, capacity_factor=capacity_factor,
                    gated=cfg.mlp == "swiglu", dropout=cfg.dropout,
                )  # fmt: skip
                block.mlp.reset_parameters(0.02, residual_std)

    def moe_layers(self) -> list[MoEFeedForward]:
        return [b.mlp for b in self.blocks if isinstance(b.mlp, MoEFeedForward)]

    def router_stats(self) -> list[RouterStats]:
        """The stats of the last forward pass, one per MoE layer."""
        stats = [m.stats for m in self.moe_layers()]
        if any(s is None for s in stats):
            raise RuntimeError("router_stats() needs a forward pass first")
        return stats

    def active_params(self) -> int:
        """Parameters a token's forward touches: all but the unchosen experts (E − k per layer)."""
        n = self.num_params()
        for m in self.moe_layers():
            per_expert = sum(p[0].numel() for p in (m.w_up, m.w_gate, m.w_down) if p is not None)
            n -= (m.n_experts - m.top_k) * per_expert
        return n


class MoELM(Task):
    """Next-token cross-entropy + α·balance + β·z-loss for an :class:`MoEGPT`."""

    def __init__(self, model: MoEGPT, balance_coef: float = 0.01, z_coef: float = 1e-3) -> None:
        super().__init__()
        if not isinstance(model, MoEGPT):
            raise TypeError(f"MoELM needs an MoEGPT model, got {type(model).__name__}")
        if balance_coef < 0 or z_coef < 0:
            raise ValueError(f"coefficients must be >= 0, got {balance_coef=}, {z_coef=}")
        self.model = model
        self.balance_coef, self.z_coef = balance_coef, z_coef

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(
        self, batch: Any, step: int, optimizer: str = "main"
    ) -> tuple[torch.Tensor, Logs]:
        x, y = batch
        ce = cross_entropy_loss(self.model(x), y)
        stats = self.model.router_stats()
        balance = torch.stack([s.balance_loss for s in stats])  # (L_moe,)
        zl = torch.stack([s.z_loss for s in stats])  # (L_moe,)
        loss = ce + self.balance_coef * balance.sum() + self.z_coef * zl.sum()
        logs = {
            "ce": ce.detach(),
            "balance": balance.mean().detach(),
            "z_loss": zl.mean().detach(),
            "dropped": torch.stack([s.dropped_fraction for s in stats]).mean(),
        }
        for layer, s in enumerate(stats):
            share = s.routed.float() / s.routed.sum()  # (E,)
            logs.update({f"util_l{layer}_e{i}": share[i] for i in range(share.numel())})
        return loss, logs

    def validation_step(self, batch: Any) -> Sums:
        x, y = batch
        out = self.model(x)
        with torch.autocast(out.device.type, enabled=False):
            logits = out.reshape(-1, out.shape[-1]).float()
            target = y.reshape(-1)
            loss_sum = F.cross_entropy(logits, target, reduction="sum").double()
            correct = (logits.argmax(-1) == target).sum()
        n = target.numel()
        dropped = torch.stack([s.dropped_fraction for s in self.model.router_stats()]).mean()
        return {
            "loss": (loss_sum, n),
            "accuracy": (correct, n),
            "dropped": (dropped.double() * n, n),
        }
