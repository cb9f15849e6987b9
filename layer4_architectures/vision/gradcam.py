"""Grad-CAM: where a CNN looked for a class (Selvaraju et al., 2017).

For a convolutional layer with activations A ∈ R^{K×h×w} and the class score y^c (the logit,
before the softmax), each channel's importance is its gradient averaged over space,

    α_k^c = (1 / hw) Σ_ij ∂y^c / ∂A_k,ij,

and the map is the ReLU of the weighted sum of channels, L^c = ReLU(Σ_k α_k^c A_k) ∈ R^{h×w}
(only evidence *for* the class). It is upsampled (bilinear) to the image size and scaled to
[0, 1] per image for display. The last convolutional stage has the most semantic features and
still a spatial layout (8×8 for a CIFAR ResNet), so it is the usual choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GradCAM:
    """Maps ``(B, H, W)`` in [0, 1], the raw maps ``(B, h, w)``, and the explained classes."""

    maps: torch.Tensor
    raw: torch.Tensor
    classes: torch.Tensor
    logits: torch.Tensor


def grad_cam(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: torch.Tensor | None = None
) -> GradCAM:
    """Grad-CAM of ``layer``'s output for ``classes`` (default: the predicted ones) on ``x``."""
    if x.ndim != 4:
        raise ValueError(f"x must be an image batch (B, C, H, W), got shape {tuple(x.shape)}")
    saved: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: saved.append(out))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x)  # (B, classes)
            if not saved:
                raise ValueError("the given layer was not used by the model's forward")
            acts = saved[-1]  # (B, K, h, w)
            if classes is None:
                classes = logits.argmax(-1)
            score = logits.gather(1, classes.view(-1, 1)).sum()  # Σ_b y^{c_b}: per-image grads
            (grads,) = torch.autograd.grad(score, acts)  # (B, K, h, w)
    finally:
        handle.remove()
        model.train(was_training)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
    raw = F.relu((alpha * acts).sum(dim=1)).detach()  # (B, h, w)
    up = F.interpolate(raw[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    up = up[:, 0]  # (B, H, W)
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    maps = (up - lo) / (hi - lo).clamp_min(1e-12)
    return GradCAM(maps, raw, classes.detach(), logits.detach())
