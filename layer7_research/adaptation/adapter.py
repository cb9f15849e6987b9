"""Bottleneck adapters: a small residual MLP after a frozen sublayer.

Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP",
https://arxiv.org/abs/1902.00751.

An adapter maps a sublayer's output h ∈ ℝ^d through a bottleneck of width m ≪ d and adds the
result back::

    Adapter(h) = h + W_up GELU(W_down h + b_down) + b_up       W_down: m × d,  W_up: d × m

Inserted after the attention and/or the MLP sublayer of each Transformer block, before the
block's own residual addition (Houlsby et al.'s figure 2), a pre-norm block becomes::

    x ← x + Adapter(Attn(Norm x)),   x ← x + Adapter(MLP(Norm x))

- **Init.** W_up = 0 and b_up = 0, so Adapter(h) = h: at step 0 the adapted model is the
  pretrained one exactly (Houlsby et al. use a near-identity init; zeros make it exact).
- **Cost.** 2·d·m + d + m trainable numbers per adapter (two matrices and two biases), the rest
  of the network frozen. Houlsby et al. also train the layer norms; here they stay frozen, so
  the count is the formula's.
- **Inference.** Unlike LoRA, the GELU keeps the adapter from folding into a weight: it costs
  two small matmuls per sublayer at serving time.

:func:`apply_adapters` wraps the ``attn``/``mlp`` modules of layer 4's GPT
:class:`~layer4_architectures.sequence.gpt.Block` (BERT's blocks are the same class) in
:class:`Adapted` (the sublayer, then its adapter), leaving layer 4's code untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layer4_architectures.sequence.gpt import Block

SUBLAYERS = ("attn", "mlp")


def adapter_parameters(d: int, m: int) -> int:
    """Trainable numbers of one adapter: W_down (m × d), b_down (m), W_up (d × m), b_up (d)."""
    return 2 * d * m + d + m


class BottleneckAdapter(nn.Module):
    """h + W_up GELU(W_down h): ``forward(h (..., d)) -> (..., d)``, the identity at init."""

    def __init__(self, d: int, m: int) -> None:
        super().__init__()
        for name, value in (("d", d), ("m", m)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BottleneckAdapter {name} must be a positive int, got {value!r}")
        self.down = nn.Linear(d, m)  # W_down, b_down: Kaiming-uniform (nn.Linear's default)
        self.up = nn.Linear(m, d)  # W_up, b_up: zeros, so the adapter starts as the identity
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = F.gelu(self.down(h))  # (..., m)
        return h + self.up(z)  # (..., d)


class Adapted(nn.Module):
    """A frozen sublayer followed by its adapter: ``forward(*args) = adapter(sublayer(*args))``
    (the sublayer's own arguments, e.g. attention's rope and KV cache, pass through)."""

    def __init__(self, sublayer: nn.Module, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.sublayer, self.adapter = sublayer, adapter

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.adapter(self.sublayer(*args, **kwargs))  # (B, T, C)


def _check(where: Sequence[str], bottleneck: int) -> list[str]:
    where = [where] if isinstance(where, str) else list(where)
    bad = [w for w in where if w not in SUBLAYERS]
    if not where or bad:
        raise ValueError(f"adapter positions {where!r}: expected a non-empty subset of {SUBLAYERS}")
    if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 1:
        raise ValueError(f"adapter bottleneck must be a positive int, got {bottleneck!r}")
    return [w for w in SUBLAYERS if w in where]


def apply_adapters(
    model: nn.Module, bottleneck: int, where: Sequence[str] | str = SUBLAYERS
) -> list[str]:
    """Insert an adapter of width ``bottleneck`` after the ``where`` sublayers of every GPT
    :class:`Block` of ``model`` (in place), freeze everything else; return the wrapped
    sublayers' qualified names."""
    where = _check(where, bottleneck)
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, Block)]
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} has no layer-4 GPT Block to put adapters in "
            "(layer4_architectures.sequence.gpt.Block)"
        )
    if any(isinstance(m, Adapted) for m in model.modules()):
        raise ValueError("the model already has adapters: apply_adapters once")
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for name, block in blocks:
        d = block.attn.n_embd  # the residual width C
        ref = next(block.parameters())
        for sub in where:
            adapter = BottleneckAdapter(d, bottleneck).to(device=ref.device, dtype=ref.dtype)
            setattr(block, sub, Adapted(getattr(block, sub), adapter))
            wrapped.append(f"{name}.{sub}" if name else sub)
    return wrapped


def adapters(model: nn.Module) -> dict[str, BottleneckAdapter]:
    """Qualified name -> adapter, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, BottleneckAdapter)}
