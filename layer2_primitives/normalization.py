"""Normalisation layers: BatchNorm1d/2d, LayerNorm, GroupNorm. One kernel, different axes.

Each standardises x over a set of axes S, then applies a per-feature affine map:

    mu = mean_S(x),   var = mean_S((x - mu)^2)   (biased),   x_hat = (x - mu) / sqrt(var + eps)
    y  = gamma * x_hat + beta

    BatchNorm: S = every axis but the channel axis 1  (statistics shared across the batch)
    LayerNorm: S = the last len(normalized_shape) axes (statistics per sample)
    GroupNorm: S = (channels of one group, spatial axes) (per sample, per group of channels)

Backward (the one trick worth memorising). With g = dL/dy, dx_hat = g * gamma and m = |S|:

    dL/dx = (1 / sqrt(var + eps)) * (dx_hat - mean_S(dx_hat) - x_hat * mean_S(dx_hat * x_hat))

because x_hat depends on x directly and through mu and var; the two means are exactly those
indirect paths. dL/dgamma = sum(g * x_hat), dL/dbeta = sum(g), summed over every axis gamma is
broadcast along.

Batch norm in training mode also keeps running statistics for evaluation, as torch does:

    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * m / (m - 1)   (unbiased)

With ``momentum=None`` (torch's meaning) the module uses momentum = 1/t at its t-th training batch,
so the running statistics are the plain average over every batch seen so far.
In eval mode it normalises with them (x_hat = (x - running_mean) / sqrt(running_var + eps)), so
its backward is the plain affine g * gamma / sqrt(running_var + eps).
Running statistics are buffers: plain ndarrays (not trainable), listed by `buffers()`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layer1_autograd import Module, Tensor
from layer2_primitives._util import check_dtypes, check_tensor


def _standardize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """x_hat and 1/sqrt(var + eps) (keepdims) over `axes`, plus the biased variance."""
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    return centered * inv_std, inv_std


def _standardize_backward(
    dx_hat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axes: tuple[int, ...]
) -> np.ndarray:
    """dL/dx from dL/dx_hat through x_hat = (x - mean) / std (see the module docstring)."""
    mean_dx_hat = dx_hat.mean(axis=axes, keepdims=True)
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=axes, keepdims=True)
    return inv_std * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)


def _batch_norm_train_op(
    x: Tensor,
    x_hat: np.ndarray,
    inv_std: np.ndarray,
    weight: Tensor | None,
    bias: Tensor | None,
    axes: tuple[int, ...],
    param_shape: tuple[int, ...],
) -> Tensor:
    """Training-mode batch norm with the backward fused: the parameter sums are reused.

    With S_1 = sum(g) = dL/dbias and S_2 = sum(g * x_hat) = dL/dweight (per channel) the
    general formula collapses to  dL/dx = gamma / std * (g - S_1/m - x_hat * S_2/m).
    """
    gamma = weight.data.reshape(param_shape) if weight is not None else None
    y = x_hat * gamma if gamma is not None else x_hat.copy()
    if bias is not None:
        y += bias.data.reshape(param_shape)
    count = x.data.size // x.shape[1]

    def backward(grad: np.ndarray) -> list[np.ndarray | None]:
        sum_g = grad.sum(axis=axes, keepdims=True)  # (1, C, 1, 1)
        sum_g_xhat = (grad * x_hat).sum(axis=axes, keepdims=True)
        grads: list[np.ndarray | None] = [None]
        if x.requires_grad:
            scale = inv_std if gamma is None else gamma * inv_std
            dx = x_hat * (sum_g_xhat / count)
            dx += sum_g / count
            np.subtract(grad, dx, out=dx)
            dx *= scale
            grads[0] = dx
        if weight is not None:
            grads.append(sum_g_xhat.reshape(weight.shape))
        if bias is not None:
            grads.append(sum_g.reshape(bias.shape))
        return grads

    parents = [x] + [p for p in (weight, bias) if p is not None]
    return Tensor.from_op(y, parents, backward, name="batch_norm")


def _affine(
    x: Tensor,
    x_hat: np.ndarray,
    weight: Tensor | None,
    bias: Tensor | None,
    param_shape: tuple[int, ...],
    dx_from_dx_hat,
    name: str,
) -> Tensor:
    """y = weight * x_hat + bias as one op; `dx_from_dx_hat` turns dL/dx_hat into dL/dx.

    Only dL/dx_hat = g * weight reaches `dx_from_dx_hat`; the affine gradients are the sums
    dL/dweight = sum(g * x_hat) and dL/dbias = sum(g) over the broadcast axes.
    """
    y = x_hat if weight is None else x_hat * weight.data.reshape(param_shape)
    if bias is not None:
        y = y + bias.data.reshape(param_shape)
    reduce_axes = tuple(i for i, s in enumerate(param_shape) if s == 1)

    def backward(grad: np.ndarray) -> list[np.ndarray | None]:
        dx_hat = grad if weight is None else grad * weight.data.reshape(param_shape)
        grads = [dx_from_dx_hat(dx_hat) if x.requires_grad else None]
        if weight is not None:
            grads.append((grad * x_hat).sum(axis=reduce_axes).reshape(weight.shape))
        if bias is not None:
            grads.append(grad.sum(axis=reduce_axes).reshape(bias.shape))
        return grads

    parents = [x] + [p for p in (weight, bias) if p is not None]
    return Tensor.from_op(y, parents, backward, name=name)


def batch_norm(
    x: Tensor,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation over every axis but 1, as `torch.nn.functional.batch_norm`.

    x (N, C) or (N, C, L) or (N, C, H, W); weight, bias, running_mean, running_var (C,).
    In training mode the running statistics (if given) are updated in place.
    """
    check_tensor(x, "batch_norm input", (2, 3, 4))
    check_dtypes(x, weight, bias)
    c = x.shape[1]
    for name, p in (("weight", weight), ("bias", bias), ("running_mean", running_mean)):
        if p is not None and tuple(p.shape) != (c,):
            raise ValueError(
                f"batch_norm {name} shape {tuple(p.shape)} != ({c},) for input {x.shape}"
            )
    axes = (0, *range(2, x.ndim))
    param_shape = (1, c) + (1,) * (x.ndim - 2)
    count = x.data.size // c
    if training:
        if count < 2:
            raise ValueError(
                f"batch_norm needs more than 1 value per channel when training, got {x.shape}"
            )
        x_hat, inv_std = _standardize(x.data, axes, eps)
        if running_mean is not None and running_var is not None:
            mean = x.data.mean(axis=axes)
            var_unbiased = (1.0 / inv_std.reshape(c) ** 2 - eps) * count / (count - 1)
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += momentum * var_unbiased.astype(running_var.dtype)

        return _batch_norm_train_op(x, x_hat, inv_std, weight, bias, axes, param_shape)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in eval mode needs running_mean and running_var")
        inv_std = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype).reshape(param_shape)
        x_hat = (x.data - running_mean.astype(x.dtype).reshape(param_shape)) * inv_std

        def dx_from_dx_hat(dx_hat: np.ndarray) -> np.ndarray:
            return dx_hat * inv_std

    return _affine(x, x_hat, weight, bias, param_shape, dx_from_dx_hat, "batch_norm")


class _BatchNorm(Module):
    expected_ndim: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: type = np.float32,
    ) -> None:
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f"momentum must be in [0, 1] or None (a cumulative average), got {momentum}"
            )
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = (
            Tensor(np.ones(num_features, dtype=dtype), requires_grad=True) if affine else None
        )
        self.bias = (
            Tensor(np.zeros(num_features, dtype=dtype), requires_grad=True) if affine else None
        )
        self.track_running_stats = track_running_stats
        self.running_mean = np.zeros(num_features, dtype=dtype) if track_running_stats else None
        self.running_var = np.ones(num_features, dtype=dtype) if track_running_stats else None
        self.num_batches_tracked = 0

    def forward(self, x: Tensor) -> Tensor:
        check_tensor(x, type(self).__name__ + " input", self.expected_ndim)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got input {x.shape} with "
                f"{x.shape[1]} channels"
            )
        use_batch_stats = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
        momentum = self.momentum
        if momentum is None:  # cumulative average: the t-th batch gets weight 1/t
            momentum = 1.0 / max(self.num_batches_tracked, 1)
        return batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_batch_stats,
            momentum,
            self.eps,
        )

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-trainable state, named as in torch's state_dict."""
        if not self.track_running_stats:
            return {}
        return {
            "running_mean": self.running_mean,
            "running_var": self.running_var,
            "num_batches_tracked": np.asarray(self.num_batches_tracked, dtype=np.int64),
        }


class BatchNorm1d(_BatchNorm):
    """Batch norm for (N, C) or (N, C, L), as `torch.nn.BatchNorm1d`.

    weight (C,) = 1, bias (C,) = 0; buffers running_mean (C,) = 0, running_var (C,) = 1.
    """

    expected_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm for (N, C, H, W), as `torch.nn.BatchNorm2d`.

    weight (C,) = 1, bias (C,) = 0; buffers running_mean (C,) = 0, running_var (C,) = 1.
    """

    expected_ndim = (4,)


def layer_norm(
    x: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer norm over the trailing `normalized_shape` axes, as `torch.nn.functional.layer_norm`."""
    check_tensor(x, "layer_norm input")
    check_dtypes(x, weight, bias)
    shape = tuple(normalized_shape)
    if x.shape[x.ndim - len(shape) :] != shape or len(shape) > x.ndim:
        raise ValueError(f"layer_norm input {x.shape} does not end with normalized_shape {shape}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    x_hat, inv_std = _standardize(x.data, axes, eps)
    param_shape = (1,) * (x.ndim - len(shape)) + shape

    def dx_from_dx_hat(dx_hat: np.ndarray) -> np.ndarray:
        return _standardize_backward(dx_hat, x_hat, inv_std, axes)

    return _affine(x, x_hat, weight, bias, param_shape, dx_from_dx_hat, "layer_norm")


class LayerNorm(Module):
    """Layer norm, as `torch.nn.LayerNorm`: weight and bias of shape normalized_shape (1 and 0).

    (..., *normalized_shape) -> same shape.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        dtype: type = np.float32,
    ) -> None:
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape, self.eps = tuple(normalized_shape), eps
        ones, zeros = np.ones(self.normalized_shape, dtype), np.zeros(self.normalized_shape, dtype)
        self.weight = Tensor(ones, requires_grad=True) if elementwise_affine else None
        self.bias = Tensor(zeros, requires_grad=True) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


def group_norm(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Group norm, as `torch.nn.functional.group_norm`: x (N, C, *) with C divisible by groups."""
    check_tensor(x, "group_norm input")
    check_dtypes(x, weight, bias)
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise ValueError(
            f"group_norm: channels of input {x.shape} not divisible by {num_groups} groups"
        )
    n, c = x.shape[:2]
    grouped = x.data.reshape(n, num_groups, -1)  # (N, G, C/G * spatial)
    g_hat, inv_std = _standardize(grouped, (2,), eps)
    x_hat = g_hat.reshape(x.shape)
    param_shape = (1, c) + (1,) * (x.ndim - 2)

    def dx_from_dx_hat(dx_hat: np.ndarray) -> np.ndarray:
        grouped_dx_hat = dx_hat.reshape(n, num_groups, -1)
        return _standardize_backward(grouped_dx_hat, g_hat, inv_std, (2,)).reshape(x.shape)

    return _affine(x, x_hat, weight, bias, param_shape, dx_from_dx_hat, "group_norm")


class GroupNorm(Module):
    """Group norm, as `torch.nn.GroupNorm`: weight (C,) = 1, bias (C,) = 0. (N, C, *) -> same."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        dtype: type = np.float32,
    ) -> None:
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(
                f"num_channels={num_channels} must be divisible by num_groups={num_groups}"
            )
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = Tensor(np.ones(num_channels, dtype), requires_grad=True) if affine else None
        self.bias = Tensor(np.zeros(num_channels, dtype), requires_grad=True) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_channels} channels) got input {x.shape}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
