"""Counting a vision model's parameters and FLOPs from its layers' shapes.

A FLOP here is one multiply or one add, so a multiply-accumulate (MAC) is 2 FLOPs, the
convention of ``torch.utils.flop_counter`` (and of "GFLOPs" in most papers, which often mean MACs:
ResNet-50's "4.1 GFLOPs" are 4.1 G MACs). Per layer, for a batch of B:

    Conv2d   2 · B · H_out · W_out · C_out · (C_in / groups) · k_h · k_w
    Linear   2 · (B · ...) · in · out          (every leading position of the input)

Bias additions, normalisations, activations and pooling are O(activations), not O(weights ×
positions), and are left out (as the torch counter does). The count is taken by running the model
once on an input of the given shape with forward hooks on every Conv2d and Linear, so any model
built from them is counted exactly, whatever its topology (shortcuts, SE gates, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class FlopReport:
    """Total forward FLOPs (2 per MAC) for one input batch, per layer name, and parameters."""

    total: int
    per_layer: dict[str, int] = field(default_factory=dict)
    parameters: int = 0

    def per_sample(self, batch: int) -> float:
        return self.total / batch


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Σ numel over the model's (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def conv2d_flops(module: nn.Conv2d, out: torch.Tensor) -> int:
    """2 · B · H_out · W_out · C_out · (C_in/groups) · k_h · k_w."""
    b, c_out, h, w = out.shape
    k = math.prod(module.kernel_size)
    return 2 * b * h * w * c_out * (module.in_channels // module.groups) * k


def linear_flops(module: nn.Linear, out: torch.Tensor) -> int:
    """2 · positions · in · out, positions = every leading index of the output."""
    positions = out.numel() // module.out_features
    return 2 * positions * module.in_features * module.out_features


COUNTERS = {nn.Conv2d: conv2d_flops, nn.Linear: linear_flops}


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> FlopReport:
    """Forward FLOPs of ``model`` on a zero input of ``input_shape`` (B, C, H, W), in eval mode."""
    if len(input_shape) < 2 or any(s < 1 for s in input_shape):
        raise ValueError(f"input_shape={input_shape}: expected a positive (B, C, ...) shape")
    per_layer: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        counter = COUNTERS.get(type(module))
        if counter is None:
            continue

        def hook(m: nn.Module, _inp: tuple, out: torch.Tensor, name=name, counter=counter) -> None:
            per_layer[name] = per_layer.get(name, 0) + counter(m, out)

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return FlopReport(sum(per_layer.values()), per_layer, count_parameters(model))
