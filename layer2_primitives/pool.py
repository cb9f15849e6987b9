"""Max and average pooling over 2-D windows (vectorised with strided window views).

For x (N, C, H, W), a kH x kW window moved with stride s over the input padded by p:

    max pool:  y[n, c, i, j] = max_{u, v}  x_pad[n, c, s*i + u, s*j + v]     (padding = -inf)
    avg pool:  y[n, c, i, j] = (1/|window|) sum_{u, v} x_pad[n, c, s*i + u, s*j + v]   (padding = 0)

with H_out = (H + 2p - kH) // s + 1 (floor mode, like torch's default). `|window|` is kH*kW
when padded cells count (torch's `count_include_pad=True`, the default) and the number of real
cells otherwise.

Backward. Max pooling routes each output gradient to the one input that won its window (the
first maximum in row-major window order on ties, like torch); average pooling spreads it evenly
over the window. Both are "scatter the per-window gradients back", the same col2im fold as the
convolution backward: a loop over the kH*kW kernel offsets, never over pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layer1_autograd import Module, Tensor
from layer2_primitives._util import check_tensor, pair
from layer2_primitives.conv import (
    conv_output_size,
    crop2d,
    extract_patches,
    fold_patches,
    pad2d,
)


def _window_args(
    x: Tensor, kernel_size, stride, padding
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    check_tensor(x, "pooling input", 4)
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    if min(kernel) < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel}")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"padding {padding} must be at most half the kernel size {kernel}")
    out = conv_output_size(x.shape[2:], kernel, stride, padding)
    return kernel, stride, padding, out


def _slab(a: np.ndarray, u: int, v: int, stride: tuple[int, int], out: tuple[int, int]):
    """The (N, C, H_out, W_out) strided view of the window cells at kernel offset (u, v)."""
    rows = slice(u, u + stride[0] * (out[0] - 1) + 1, stride[0])
    cols = slice(v, v + stride[1] * (out[1] - 1) + 1, stride[1])
    return a[:, :, rows, cols]


def max_pool2d(
    x: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> Tensor:
    """Max over each window, as `F.max_pool2d`. (N, C, H, W) -> (N, C, Ho, Wo)."""
    kernel, stride, (ph, pw), out = _window_args(x, kernel_size, stride, padding)
    x_pad = pad2d(x.data, (ph, pw), value=-np.inf)
    offsets = [(u, v) for u in range(kernel[0]) for v in range(kernel[1])]
    # Running max over the kH*kW kernel offsets (each a whole strided slab of the input);
    # a strict ">" keeps the FIRST maximum in row-major window order, as torch does.
    y = _slab(x_pad, 0, 0, stride, out).copy()
    winner = np.zeros(y.shape, dtype=np.int8 if len(offsets) < 128 else np.int64)
    for j, (u, v) in enumerate(offsets[1:], start=1):
        candidate = _slab(x_pad, u, v, stride, out)
        better = candidate > y
        np.copyto(y, candidate, where=better)
        winner[better] = j

    def backward(grad: np.ndarray) -> list[np.ndarray]:
        dx_pad = np.zeros(x_pad.shape, dtype=grad.dtype)
        for j, (u, v) in enumerate(offsets):
            _slab(dx_pad, u, v, stride, out)[...] += np.where(winner == j, grad, 0)
        return [crop2d(dx_pad, (ph, pw))]

    return Tensor.from_op(y, [x], backward, name="max_pool2d")


def avg_pool2d(
    x: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    count_include_pad: bool = True,
) -> Tensor:
    """Mean over each window, as `F.avg_pool2d`. (N, C, H, W) -> (N, C, Ho, Wo)."""
    kernel, stride, padding, (ho, wo) = _window_args(x, kernel_size, stride, padding)
    n, c = x.shape[:2]
    x_pad = pad2d(x.data, padding)
    y = extract_patches(x_pad, kernel, stride, (ho, wo)).sum(axis=(-2, -1))
    if count_include_pad:
        divisor = np.asarray(kernel[0] * kernel[1], dtype=x.dtype)
    else:  # count the real (unpadded) cells of every window: pool a padded mask of ones
        ones = pad2d(np.ones((1, 1, *x.shape[2:]), dtype=x.dtype), padding)
        divisor = extract_patches(ones, kernel, stride, (ho, wo)).sum(axis=(-2, -1))
    y = y / divisor

    def backward(grad: np.ndarray) -> list[np.ndarray]:
        share = np.broadcast_to((grad / divisor)[:, :, None, None], (n, c, *kernel, ho, wo))
        return [crop2d(fold_patches(share, x_pad.shape, stride), padding)]

    return Tensor.from_op(y, [x], backward, name="avg_pool2d")


class MaxPool2d(Module):
    """Max pooling (no parameters), as `torch.nn.MaxPool2d`; stride defaults to kernel_size."""

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ) -> None:
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(Module):
    """Average pooling layer (no parameters), as `torch.nn.AvgPool2d`."""

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        count_include_pad: bool = True,
    ) -> None:
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.count_include_pad = count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)
