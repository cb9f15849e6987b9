"""A small CNN whose normalisation and dropout are switches: the net of the regularisation study.

``RegCNN`` is, for each width ``w`` of ``widths``: Conv3x3 → norm → ReLU → MaxPool2, then a
two-layer head, Flatten → Dropout(p) → Linear → ReLU → Dropout(p) → Linear::

    (B, C, S, S) → (B, w1, S/2, S/2) → ... → (B, wk, S/2^k, S/2^k) → (B, F) → (B, hidden) → (B, K)

with ``F = wk·(S/2^k)²``. The norm, applied to a conv's output ``x`` (B, C, H, W):

- ``"batch"`` (BatchNorm, Ioffe & Szegedy 2015): per channel ``c``, over the batch and space,
  ``y = γ_c (x - μ_c) / √(σ²_c + ε) + β_c`` with ``μ_c, σ²_c`` the mean and (biased) variance
  over (B, H, W) in training and running averages in evaluation.
- ``"layer"`` (LayerNorm, Ba et al. 2016, as ``GroupNorm(1, C)``: Wu & He 2018 show that a
  group norm with one group *is* layer norm): per sample ``b``, over (C, H, W),
  ``y = γ_c (x - μ_b) / √(σ²_b + ε) + β_c``, the same in training and evaluation, with a
  per-channel affine ``γ, β`` (C,).
- ``"none"``: no normalisation; the conv then has a bias (a norm's β makes one redundant).

Dropout (Srivastava et al. 2014) in training zeroes each feature with probability ``p`` and scales
the survivors by ``1/(1-p)`` so that ``E[y] = x``; in evaluation it is the identity (so ``p = 0``
is the identity in both modes).

Parameters: ``Σ_i (9·c_{i-1}·w_i + 2·w_i)`` for the convs and their norms' ``γ, β`` (``9·c·w + w``
with no norm: weights plus bias), then ``F·hidden + hidden + hidden·K + K`` for the head
(:func:`regcnn_params`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

NORMS = ("batch", "layer", "none")


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation layer ``norm`` names, for ``channels`` channels."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; expected one of {list(NORMS)}")


def _check(norm: str, dropout: float, widths: Sequence[int], image_size: int) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {list(NORMS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout}: expected a probability in [0, 1)")
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty list of positive ints, got {list(widths)}")
    if image_size % 2 ** len(widths):
        raise ValueError(
            f"image_size={image_size} must be divisible by 2^{len(widths)} (one pool per width)"
        )


class RegCNN(nn.Module):
    """Conv3x3 → norm → ReLU → MaxPool2 per width, then Dropout → Linear → ReLU → Dropout →
    Linear (see the module docstring)."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        widths: Sequence[int] = (32, 64, 128),
        hidden: int = 256,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check(norm, dropout, widths, image_size)
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, 3, padding=1, bias=norm == "none"),
                make_norm(norm, w),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c = w
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, S, S) → logits (B, K)."""
        return self.head(self.features(x))  # (B, wk, S/2^k, S/2^k) → (B, K)


def regcnn_params(
    in_channels: int,
    num_classes: int,
    image_size: int,
    widths: Sequence[int],
    hidden: int,
    norm: str,
) -> int:
    """The parameter count of ``RegCNN`` with these sizes, from the module docstring's formula."""
    total, c = 0, in_channels
    for w in widths:
        total += 9 * c * w + (w if norm == "none" else 2 * w)
        c = w
    features = c * (image_size // 2 ** len(widths)) ** 2
    return total + features * hidden + hidden + hidden * num_classes + num_classes
