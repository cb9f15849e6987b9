"""2-D convolution (cross-correlation, as in every deep-learning library), vectorised with im2col.

For an input x of shape (N, C_in, H, W), a weight w of shape (C_out, C_in/groups, kH, kW) and a
bias b of shape (C_out,), with stride s and zero padding p:

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x_pad[n, g(o)*C_in/G + c, s*i + u, s*j + v]

    H_out = (H + 2 p_h - kH) // s_h + 1,     W_out = (W + 2 p_w - kW) // s_w + 1

where g(o) is the group of output channel o (groups split the channels into G independent
convolutions; G = C_in is a depthwise convolution).

im2col turns the sum into a matrix product. `sliding_window_view` exposes every kH x kW patch of
the padded input as a view; one copy lays the patches out as columns

    cols[g, (c, u, v), (n, i, j)]           # (G, C_in/G * kH * kW, N * H_out * W_out)

and then y[g] = W_g @ cols[g] with W_g the (C_out/G, C_in/G*kH*kW) weight matrix of group g:
all the arithmetic runs in BLAS, none in Python loops over pixels.

Backward, with gy = dL/dy laid out channel-major as (G, C_out/G, N * H_out * W_out):
    dL/dW_g  = gy[g] @ cols[g]^T                              (one matmul per group)
    dL/dcols = W_g^T @ gy[g]                                  (same shape as cols)
    dL/dx    = col2im(dL/dcols): every patch's gradient is added back where the patch came
               from. Patches overlap, so the scatter is a loop over the kH*kW kernel offsets
               (9 iterations for a 3x3 kernel), each a strided add of a whole (N, C, H_out, W_out)
               slab, then the padding is cropped off.
    dL/db    = sum of gy over (n, i, j).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from layer1_autograd import Module, Tensor
from layer2_primitives._util import check_dtypes, check_tensor, pair, uniform


def conv_output_size(
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[int, int]:
    """(H_out, W_out) of a convolution or pooling window; error if the kernel does not fit."""
    padded = (size[0] + 2 * padding[0], size[1] + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(
            f"kernel {kernel} is larger than the padded input {padded} "
            f"(input {size} with padding {padding})"
        )
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return (padded[0] - kernel[0]) // stride[0] + 1, (padded[1] - kernel[1]) // stride[1] + 1


def extract_patches(
    x_pad: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]
) -> np.ndarray:
    """Strided view (N, C, H_out, W_out, kH, kW) of every window of the padded input (no copy)."""
    win = sliding_window_view(x_pad, kernel, axis=(2, 3))  # (N, C, Hp-kH+1, Wp-kW+1, kH, kW)
    rows = slice(None, stride[0] * (out[0] - 1) + 1, stride[0])
    cols = slice(None, stride[1] * (out[1] - 1) + 1, stride[1])
    return win[:, :, rows, cols]


def fold_patches(
    grad_patches: np.ndarray, padded_shape: tuple[int, ...], stride: tuple[int, int]
) -> np.ndarray:
    """Adjoint of `extract_patches`: add patch gradients (A, B, kH, kW, H_out, W_out) back in place.

    Returns an array of `padded_shape` (A, B, Hp, Wp). The loop runs over the kH*kW kernel
    offsets, each a strided add of a whole (A, B, H_out, W_out) slab: no loop over pixels.
    """
    _, _, kh, kw, ho, wo = grad_patches.shape
    out = np.zeros(padded_shape, dtype=grad_patches.dtype)
    for u in range(kh):
        for v in range(kw):
            rows = slice(u, u + stride[0] * (ho - 1) + 1, stride[0])
            cols = slice(v, v + stride[1] * (wo - 1) + 1, stride[1])
            out[:, :, rows, cols] += grad_patches[:, :, u, v]
    return out


Sides = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def _sides(padding: tuple[int, int] | Sides) -> Sides:
    """(p_h, p_w) -> ((p_h, p_h), (p_w, p_w)); per-side padding is returned as it is."""
    return tuple((p, p) if isinstance(p, int | np.integer) else tuple(p) for p in padding)


def pad2d(x: np.ndarray, padding: tuple[int, int] | Sides, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of (A, B, H, W) by (p_h, p_w) on both sides (or per side)."""
    (top, bottom), (left, right) = _sides(padding)
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def crop2d(x_pad: np.ndarray, padding: tuple[int, int] | Sides) -> np.ndarray:
    """Inverse of `pad2d`: drop the padding from the last two axes."""
    (top, bottom), (left, right) = _sides(padding)
    return x_pad[:, :, top : x_pad.shape[2] - bottom, left : x_pad.shape[3] - right]


def conv_padding(
    padding: str | int | Sequence[int], kernel: tuple[int, int], stride: tuple[int, int]
) -> Sides:
    """Per-side padding for an int, a pair, 'valid' (none) or 'same' (output size = input size).

    'same' pads k - 1 in all, the extra one of an even kernel on the bottom/right (as torch), and
    exists only for stride 1: with a larger stride no padding keeps the size.
    """
    if not isinstance(padding, str):
        return _sides(pair(padding, "padding"))
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"padding='same' needs stride 1 (as torch), got stride {stride}")
    (top, bottom), (left, right) = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel]
    return (top, bottom), (left, right)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    groups: int = 1,
) -> Tensor:
    """y = conv2d(x, weight) + bias, as `torch.nn.functional.conv2d` (no dilation).

    x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,)
    -> y (N, C_out, H_out, W_out). ``padding`` is an int, a pair, 'valid' or 'same'.
    """
    check_tensor(x, "conv2d input", 4)
    check_tensor(weight, "conv2d weight", 4)
    if bias is not None:
        check_tensor(bias, "conv2d bias", 1)
    check_dtypes(x, weight, bias)
    n, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    stride = pair(stride, "stride")
    padding = conv_padding(padding, (kh, kw), stride)
    if groups < 1 or c_out % groups:
        raise ValueError(f"groups={groups} must be >= 1 and divide out_channels={c_out}")
    if c_per_group * groups != c_in:
        raise ValueError(
            f"input has {c_in} channels (shape {x.shape}) but weight {weight.shape} with "
            f"groups={groups} expects {c_per_group * groups}"
        )
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"bias shape {bias.shape} does not match out_channels={c_out}")
    (top, bottom), (left, right) = padding
    ho, wo = conv_output_size((h + top + bottom, w + left + right), (kh, kw), stride, (0, 0))
    g, k, m = groups, c_per_group * kh * kw, n * ho * wo

    # Work channel-major: the patch matrix is (G, K, N*H_out*W_out) so that each group's product
    # is ONE large matmul (BLAS runs best on few big products), and the output comes out as
    # (C_out, N, H_out, W_out) memory, returned as an (N, C_out, H_out, W_out) view.
    x_pad = pad2d(x.data, padding)
    patches = extract_patches(x_pad, (kh, kw), stride, (ho, wo))  # (N, C, Ho, Wo, kH, kW) view
    cols = patches.transpose(1, 4, 5, 0, 2, 3).reshape(g, k, m)  # the one im2col copy
    w_mat = weight.data.reshape(g, c_out // g, k)  # (G, O/G, K)
    y = np.matmul(w_mat, cols).reshape(c_out, n, ho, wo)  # (O, N, Ho, Wo)
    if bias is not None:
        y += bias.data[:, None, None, None]

    def backward(grad: np.ndarray) -> list[np.ndarray | None]:
        gy = np.ascontiguousarray(grad.transpose(1, 0, 2, 3)).reshape(g, c_out // g, m)
        grads: list[np.ndarray | None] = [None, None]
        if x.requires_grad:
            dcols = np.matmul(w_mat.transpose(0, 2, 1), gy)  # (G, K, M)
            dpatches = dcols.reshape(c_in, kh, kw, n, ho, wo).transpose(0, 3, 1, 2, 4, 5)
            padded = (c_in, n, x_pad.shape[2], x_pad.shape[3])
            grads[0] = crop2d(fold_patches(dpatches, padded, stride), padding).transpose(1, 0, 2, 3)
        if weight.requires_grad:
            grads[1] = np.matmul(gy, cols.transpose(0, 2, 1)).reshape(weight.shape)
        if bias is not None:
            grads.append(grad.sum(axis=(0, 2, 3)))
        return grads

    parents = [x, weight] + ([bias] if bias is not None else [])
    return Tensor.from_op(y.transpose(1, 0, 2, 3), parents, backward, name="conv2d")


class Conv2d(Module):
    """2-D convolution layer, parameters named and shaped as `torch.nn.Conv2d`.

    weight (out_channels, in_channels/groups, kH, kW), bias (out_channels,), both initialised
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels/groups * kH * kW (torch's default).
    forward: (N, in_channels, H, W) -> (N, out_channels, H_out, W_out), see `conv2d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        conv_padding(padding, self.kernel_size, self.stride)  # refuse bad padding now, not later
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / np.sqrt(fan_in)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = uniform(rng, bound, shape, dtype)
        self.bias = uniform(rng, bound, (out_channels,), dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)
