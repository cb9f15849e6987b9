"""LoRA: low-rank adaptation of a frozen linear layer.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
https://arxiv.org/abs/2106.09685.

Fine-tuning changes a pretrained weight W ∈ ℝ^{d_out × d_in} by some ΔW. LoRA's hypothesis is
that the useful ΔW has a low *intrinsic rank*, so it is learned as a product of two thin
matrices while W stays frozen::

    h = W x + (α/r) · B A x          A ∈ ℝ^{r × d_in},  B ∈ ℝ^{d_out × r},  r ≪ min(d_in, d_out)

- **Init.** A is Kaiming-uniform (as ``nn.Linear`` and ``peft`` initialise a weight), B = 0, so
  ΔW = B A = 0: at step 0 the adapted model *is* the pretrained model, output for output.
- **Scale.** α/r fixes the size of the update as r changes: with Adam (steps of about the
  learning rate per entry) a larger r would otherwise need a retuned learning rate.
- **Cost.** r·(d_in + d_out) trainable numbers per adapted layer instead of d_in·d_out; the
  optimizer's state (two Adam moments) shrinks by the same factor.
- **Merge.** After training, W ← W + (α/r) B A folds the adapter into the layer: a plain
  ``nn.Linear`` with no inference cost (:func:`merge_lora`); ``unmerge`` subtracts it again.

:func:`apply_lora` swaps the chosen ``nn.Linear`` modules of any model for :class:`LoRALinear`
(a target names a module or a suffix of its qualified name, ``peft``'s rule: ``"attn.qkv"``
matches ``blocks.0.attn.qkv``) and freezes everything else. The tests compare outputs and
gradients with the ``peft`` library's LoRA holding the same A and B.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def lora_parameters(in_features: int, out_features: int, r: int) -> int:
    """Trainable numbers of one LoRA layer: A (r × in) and B (out × r), r·(in + out)."""
    return r * (in_features + out_features)


class LoRALinear(nn.Module):
    """``base`` (frozen) plus the low-rank update (α/r)·B A: ``forward(x (..., in)) -> (..., out)``.

    ``dropout`` is applied to the adapter's input only (Hu et al.'s ``lora_dropout``).
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"LoRALinear adapts an nn.Linear, got {type(base).__name__}")
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"LoRA rank r must be a positive int, got {r!r}")
        if not alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {alpha!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, float(alpha), float(alpha) / r
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **like))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **like))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's (and peft's) init
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, merged={self.merged}"

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r) · B A, (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)  # W x + b: (..., out)
        if self.merged:  # W already holds W + ΔW
            return h
        z = F.linear(self.dropout(x), self.lora_A)  # A x: (..., r)
        return h + self.scaling * F.linear(z, self.lora_B)  # + (α/r) B A x: (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """W ← W + (α/r) B A (forward then skips the adapter path)."""
        if self.merged:
            raise ValueError("LoRALinear.merge: already merged (unmerge first)")
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W ← W − (α/r) B A: the frozen weight back, the adapter path on again."""
        if not self.merged:
            raise ValueError("LoRALinear.unmerge: not merged")
        self.base.weight -= self.delta_weight()
        self.merged = False


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _matches(name: str, target: str) -> bool:
    """peft's rule: the qualified name is the target or ends with ``.target``."""
    return name == target or name.endswith("." + target)


def _tied(model: nn.Module) -> dict[int, list[str]]:
    """id(parameter) -> every qualified name it appears under (more than one: tied weights)."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return names


def _check_targets(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """The Linear names ``targets`` select, in module order (or a ValueError saying why not)."""
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA layers: apply_lora once (merge_lora first)")
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets must be non-empty module names, got {targets!r}")
    linears = _linear_names(model)
    missing = [t for t in targets if not any(_matches(n, t) for n in linears)]
    if missing:
        raise ValueError(
            f"LoRA targets {missing} match no nn.Linear of {type(model).__name__}; "
            f"its Linear modules are {linears}"
        )
    chosen = [n for n in linears if any(_matches(n, t) for t in targets)]
    tied = _tied(model)
    for name in chosen:
        shared = tied[id(model.get_submodule(name).weight)]
        if len(shared) > 1:
            raise ValueError(
                f"LoRA target {name!r} has a weight tied to {shared}: merging would change "
                "every module sharing it; adapt an untied layer"
            )
    return chosen


def apply_lora(
    model: nn.Module, targets: Sequence[str] | str, r: int, alpha: float, dropout: float = 0.0
) -> list[str]:
    """Replace the ``nn.Linear`` modules ``targets`` name by :class:`LoRALinear` (in place),
    freeze every other parameter; return the qualified names of the adapted layers."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    chosen = _check_targets(model, targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha, dropout))
    return chosen


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Qualified name -> LoRA layer, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' A and B (what a LoRA fine-tune has to ship): ``<layer>.lora_A``, ..."""
    return {
        k: v for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in ("lora_A", "lora_B")
    }


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every LoRA layer folded in (W + (α/r) B A) and replaced by its
    plain ``nn.Linear``: the original architecture and state-dict names, every parameter
    trainable again, ready to export or serve. ``model`` itself is left as it was."""
    merged = copy.deepcopy(model)
    for name, layer in lora_layers(merged).items():
        if not layer.merged:
            layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent_name), child, layer.base)
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged


def trainable_parameters(model: nn.Module) -> int:
    """Numbers the optimizer updates: parameters with ``requires_grad`` (a tied one once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
