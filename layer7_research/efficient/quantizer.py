"""Affine (uniform) quantisation from scratch: scales, zero points, observers, fake-quant.

Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-
Only Inference" (https://arxiv.org/abs/1712.05877). A real value x is stored as an integer q of a
range [q_min, q_max] with a scale s > 0 and an integer zero point z (the code of x = 0):

    q = clamp(round(x / s) + z, q_min, q_max),        x̂ = s · (q − z).

Inside the representable range [s(q_min − z), s(q_max − z)] the rounding error is |x − x̂| ≤ s/2;
outside it x̂ saturates. Given an observed range [min, max], widened to hold 0 so that zero (padding,
ReLU outputs) is represented exactly:

- asymmetric (affine): s = (max − min) / (q_max − q_min),  z = q_min − round(min / s), clamped;
- symmetric: s = max(|min|, max) / ((q_max − q_min) / 2),  z = 0 (int8) or the middle code (uint8),

with s ≥ ε (float32 eps) so that a constant tensor does not divide by 0. As torch's kernels do,
x/s is computed as x · (1/s): the two differ in the last bit, which decides exact ties (the
largest weight of a symmetric range lands on ±127.5 by construction). Ranges: int8 [−128, 127],
uint8 [0, 255]; ``reduce_range`` drops one bit ([−64, 63], [0, 127]), which the x86/fbgemm
kernels need for activations so that their 16-bit accumulations cannot overflow.

**Granularity.** Per tensor: one (s, z). Per channel (``axis``): one (s, z) per slice along
``axis``; for weights (out_channels, ...) this is ``axis=0``, and a channel with small weights
gets a small scale instead of sharing the largest channel's.

**Observers** choose [min, max] from data: :class:`Observer` keeps the running min/max of all it
saw, or (``averaging_constant`` c) a moving average min ← min + c (min_batch − min), which ignores
a rare outlier batch. **Fake quantisation** computes x̂ in floating point, so a network can be
evaluated (or trained) as if quantised. Its gradient uses the straight-through estimator (Bengio
et al. 2013): round has derivative 0 almost everywhere, so backward treats it as the identity
inside the range and as 0 where the value was clamped, ∂x̂/∂x = 1[q_min ≤ round(x/s) + z ≤ q_max].

Checked against ``torch.ao.quantization``'s observers, ``torch.quantize_per_tensor`` /
``torch.quantize_per_channel`` and ``torch.fake_quantize_per_tensor_affine`` in
``tests/layer7/test_quantizer.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

DTYPES = {"int8": (-128, 127), "uint8": (0, 255)}
EPS = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class QScheme:
    """How a tensor is quantised: integer type, symmetric or affine, per tensor or per channel."""

    dtype: str = "int8"
    symmetric: bool = False
    axis: int | None = None  # None: per tensor; else one (scale, zero point) per slice
    reduce_range: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"quantisation dtype={self.dtype!r}: expected one of {list(DTYPES)}")
        if self.axis is not None and (not isinstance(self.axis, int) or self.axis < 0):
            raise ValueError(f"quantisation axis={self.axis!r}: expected None or an int >= 0")

    @property
    def qmin(self) -> int:
        lo = DTYPES[self.dtype][0]
        return lo // 2 if self.reduce_range else lo

    @property
    def qmax(self) -> int:
        hi = DTYPES[self.dtype][1]
        return hi // 2 if self.reduce_range else hi


def _per_axis(v: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """A per-channel vector (C,) shaped to broadcast along ``axis`` of ``x``; a scalar as is."""
    if axis is None:
        return v
    if axis >= x.dim() or v.numel() != x.shape[axis]:
        raise ValueError(
            f"per-channel parameters of length {v.numel()} do not match axis {axis} of a tensor "
            f"of shape {tuple(x.shape)}"
        )
    shape = [1] * x.dim()
    shape[axis] = -1
    return v.reshape(shape)


def extrema(x: torch.Tensor, axis: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of ``x``: scalars, or one per slice along ``axis`` (shape (C,))."""
    if x.numel() == 0:
        raise ValueError(f"cannot observe an empty tensor of shape {tuple(x.shape)}")
    if axis is None:
        return torch.aminmax(x.detach().float())
    flat = x.detach().float().movedim(axis, 0).flatten(1)  # (C, everything else)
    return torch.aminmax(flat, dim=1)


def qparams(
    min_val: torch.Tensor, max_val: torch.Tensor, scheme: QScheme
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float32) and zero point (int64) for the observed range [min_val, max_val]."""
    lo = torch.minimum(min_val.float(), torch.zeros_like(min_val, dtype=torch.float32))
    hi = torch.maximum(max_val.float(), torch.zeros_like(max_val, dtype=torch.float32))
    span = float(scheme.qmax - scheme.qmin)
    if scheme.symmetric:
        # the range [-m, m] over the 2^b - 1 codes either side of the middle one
        scale = torch.clamp(torch.maximum(-lo, hi) / (span / 2), min=EPS)
        middle = 0 if scheme.dtype == "int8" else (scheme.qmin + scheme.qmax + 1) // 2
        zero_point = torch.full_like(scale, middle, dtype=torch.int64)
    else:
        scale = torch.clamp((hi - lo) / span, min=EPS)
        zero_point = scheme.qmin - torch.round(lo / scale).to(torch.int64)
        zero_point = torch.clamp(zero_point, scheme.qmin, scheme.qmax)
    return scale, zero_point


def quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, scheme: QScheme
) -> torch.Tensor:
    """q = clamp(round(x / s) + z, q_min, q_max), as int64 codes of ``x``'s shape."""
    s, z = _per_axis(scale, x, scheme.axis), _per_axis(zero_point, x, scheme.axis)
    q = torch.round(x * (1.0 / s)).to(torch.int64) + z
    return torch.clamp(q, scheme.qmin, scheme.qmax)


def dequantize(
    q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, scheme: QScheme
) -> torch.Tensor:
    """x̂ = s · (q − z), float32."""
    s, z = _per_axis(scale, q, scheme.axis), _per_axis(zero_point, q, scheme.axis)
    return s * (q - z).to(torch.float32)


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, scheme: QScheme
) -> torch.Tensor:
    """x̂ = s (clamp(round(x/s) + z) − z) forward; straight-through gradient inside the range.

    Backward: ∂x̂/∂x = 1 where q_min ≤ round(x/s) + z ≤ q_max, else 0 (clamped values get none).
    """
    s, z = _per_axis(scale, x, scheme.axis), _per_axis(zero_point, x, scheme.axis)
    with torch.no_grad():
        q = torch.round(x * (1.0 / s)) + z  # unclamped codes
        inside = (q >= scheme.qmin) & (q <= scheme.qmax)
        x_hat = s * (torch.clamp(q, scheme.qmin, scheme.qmax) - z)
    # value x̂, gradient 1[inside]: x − x.detach() is 0 forward and the identity backward
    return x_hat.to(x.dtype) + (x - x.detach()) * inside


class Observer(nn.Module):
    """Tracks the range of the tensors it sees and turns it into (scale, zero point).

    ``averaging_constant`` None: running min/max (torch's ``MinMaxObserver``, or
    ``PerChannelMinMaxObserver`` with ``scheme.axis``); c in (0, 1]: moving averages
    min ← min + c (min_batch − min) after the first batch (``MovingAverageMinMaxObserver``).
    """

    def __init__(self, scheme: QScheme | None = None, averaging_constant: float | None = None):
        super().__init__()
        if averaging_constant is not None and not 0 < averaging_constant <= 1:
            raise ValueError(
                f"averaging_constant={averaging_constant}: expected None or a value in (0, 1]"
            )
        self.scheme = scheme or QScheme()
        self.averaging_constant = averaging_constant
        self.register_buffer("min_val", torch.tensor([]))
        self.register_buffer("max_val", torch.tensor([]))

    @property
    def observed(self) -> bool:
        return self.min_val.numel() > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Update the range with ``x``; return ``x`` unchanged."""
        lo, hi = extrema(x, self.scheme.axis)
        if not self.observed:
            self.min_val, self.max_val = lo, hi
        elif self.averaging_constant is None:
            self.min_val = torch.minimum(self.min_val, lo)
            self.max_val = torch.maximum(self.max_val, hi)
        else:
            c = self.averaging_constant
            self.min_val = self.min_val + c * (lo - self.min_val)
            self.max_val = self.max_val + c * (hi - self.max_val)
        return x

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.observed:
            raise RuntimeError("the observer has seen no data: run it on a tensor first")
        return qparams(self.min_val, self.max_val, self.scheme)


class FakeQuant(nn.Module):
    """An observer followed by fake quantisation with its current (scale, zero point).

    ``observe`` False freezes the range (after calibration, or late in QAT); ``enabled`` False
    makes the module the identity.
    """

    def __init__(self, scheme: QScheme | None = None, averaging_constant: float | None = None):
        super().__init__()
        self.observer = Observer(scheme, averaging_constant)
        self.observe, self.enabled = True, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observe:
            self.observer(x)
        if not self.enabled:
            return x
        scale, zero_point = self.observer.qparams()
        return fake_quantize(x, scale, zero_point, self.observer.scheme)
