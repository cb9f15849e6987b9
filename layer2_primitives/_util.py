"""Small shared helpers for layer 2: argument checks and splitting a fused op's packed output.

A fused primitive (an LSTM over a whole sequence, say) produces several results in one
`Tensor.from_op`; layer 1's op returns one Tensor, so the kernel packs its results into one
array and `unpack` hands out views of it, each a differentiable op whose backward writes the
incoming gradient into the right slot of a zero array (the engine sums the slots).
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


def unpack(packed: Tensor, index: tuple) -> Tensor:
    """A differentiable view `packed[index]` for basic (slice/int) indices without overlap."""
    shape, dtype = packed.shape, packed.dtype

    def backward(grad: np.ndarray) -> list[np.ndarray]:
        full = np.zeros(shape, dtype=dtype)
        full[index] = grad
        return [full]

    return Tensor.from_op(packed.data[index], [packed], backward, name="unpack")


def uniform(rng: np.random.Generator, bound: float, shape: tuple[int, ...], dtype) -> Tensor:
    """A trainable parameter drawn from U(-bound, bound), torch's default for most layers."""
    return Tensor(rng.uniform(-bound, bound, size=shape).astype(dtype), requires_grad=True)
