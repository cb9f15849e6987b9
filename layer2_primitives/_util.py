"""Small shared helpers for layer 2: argument checks and parameter initialisation.

(A fused primitive with several results, an LSTM over a whole sequence, packs them into one
`Tensor.from_op` output and hands them out by plain indexing: `Tensor.__getitem__` is
differentiable, and the engine sums the gradients of the slices.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layer1_autograd import Tensor


def pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """`3 -> (3, 3)`; `(2, 3) -> (2, 3)`; checks the values are non-negative ints."""
    if isinstance(value, (int, np.integer)):
        out = (int(value), int(value))
    else:
        out = tuple(int(v) for v in value)
        if len(out) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(out) < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return out  # type: ignore[return-value]


def check_tensor(x: object, name: str, ndim: int | tuple[int, ...] | None = None) -> Tensor:
    """Raise TypeError unless `x` is a Tensor, ValueError unless it has `ndim` dimensions."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a layer1_autograd.Tensor, got {type(x).__name__}")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and x.ndim not in allowed:
        raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dims, got {x.shape}")
    return x


def check_dtypes(*tensors: Tensor | None) -> np.dtype:
    """All tensors share one floating dtype (float32 or float64); return it."""
    present = [t for t in tensors if t is not None]
    dtypes = {t.dtype for t in present}
    if len(dtypes) != 1:
        raise TypeError(f"mixed dtypes {sorted(str(d) for d in dtypes)}; cast to one dtype first")
    return present[0].dtype


def uniform(rng: np.random.Generator, bound: float, shape: tuple[int, ...], dtype) -> Tensor:
    """A trainable parameter drawn from U(-bound, bound), torch's default for most layers."""
    return Tensor(rng.uniform(-bound, bound, size=shape).astype(dtype), requires_grad=True)
