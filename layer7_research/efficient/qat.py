"""Quantisation-aware training (QAT): fine-tune with the int8 rounding simulated in the forward.

Jacob et al. 2018 (https://arxiv.org/abs/1712.05877), §3. Post-training quantisation adds an
error the network never saw. QAT inserts fake-quant x̂ = s (clamp(round(x/s) + z) − z) on the
weights and activations (FX graph mode ``prepare_qat_fx``: the same places static int8 quantises,
with conv-BN(-ReLU) fused into modules that fold BN into the conv on the fly), and trains: the
straight-through estimator passes ∂L/∂x̂ to x inside the range, so the weights move to where their
rounded values work. Two switches late in the fine-tune, as in the paper and torch's recipe:

- freeze BN statistics (``freeze_bn_step``): the folded weights w γ/σ stop changing with each
  batch's σ, so the last steps train the weights that will actually be quantised;
- freeze the observers (``freeze_observer_step``): the scales and zero points stop moving.

Then ``convert_fx`` turns the fake-quant graph into int8 kernels, as for static PTQ. The
fine-tune is layer 3's :class:`~layer3_framework.Trainer` on the prepared graph (a classifier).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from layer3_framework import Trainer, TrainerConfig
from layer7_research.efficient.ptq import quant_engine


def prepare_qat(model: nn.Module, example: torch.Tensor, engine: str = "x86") -> nn.Module:
    """A copy of ``model`` (traced, conv-BN-ReLU fused) with fake-quant modules, in train mode."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    with quant_engine(engine):
        return prepare_qat_fx(
            copy.deepcopy(model).train(), get_default_qat_qconfig_mapping(engine), (example,)
        )


def convert_qat(prepared: nn.Module, engine: str = "x86") -> nn.Module:
    """The int8 model of a QAT-trained graph (a copy; the graph is left as it is)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with quant_engine(engine):
        return convert_fx(copy.deepcopy(prepared).cpu().eval())


class QATSchedule:
    """A trainer hook: freeze BN statistics after ``freeze_bn_step`` steps and the observers
    (scales, zero points) after ``freeze_observer_step``."""

    def __init__(self, prepared: nn.Module, freeze_bn_step: int, freeze_observer_step: int):
        if freeze_bn_step < 0 or freeze_observer_step < 0:
            raise ValueError(
                f"freeze_bn_step={freeze_bn_step}, freeze_observer_step={freeze_observer_step}: "
                "expected >= 0"
            )
        self.prepared = prepared
        self.freeze_bn_step, self.freeze_observer_step = freeze_bn_step, freeze_observer_step

    def __call__(self, trainer: Any) -> None:
        from torch.ao.nn.intrinsic.qat import freeze_bn_stats
        from torch.ao.quantization import disable_observer

        if trainer.step == self.freeze_bn_step:
            self.prepared.apply(freeze_bn_stats)
        if trainer.step == self.freeze_observer_step:
            self.prepared.apply(disable_observer)


def finetune(
    prepared: nn.Module,
    train_loader: Iterable,
    steps: int,
    lr: float,
    *,
    freeze_fraction: float = 0.7,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, float]:
    """Fine-tune a QAT graph with SGD (momentum 0.9, cosine-annealed ``lr``) for ``steps``;
    BN statistics and observers freeze after ``freeze_fraction`` of the steps."""
    if not 0 <= freeze_fraction <= 1:
        raise ValueError(f"freeze_fraction={freeze_fraction}: expected a value in [0, 1]")
    opt = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    freeze = int(freeze_fraction * steps)
    cfg = TrainerConfig(max_steps=steps, log_every=max(1, steps // 5), progress=progress)
    hook = QATSchedule(prepared, freeze, freeze)
    trainer = Trainer(
        prepared, opt, train_loader, cfg, device=device, scheduler=sched, hooks=[hook]
    )
    return trainer.fit()
