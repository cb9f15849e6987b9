"""Calculus by finite differences, and the gradient check every autograd test relies on.

The derivative is a limit, ``f'(x) = lim_{h->0} (f(x+h) - f(x)) / h``. A computer cannot take
the limit, so it picks a small h and pays two errors:

* truncation: Taylor's theorem gives ``(f(x+h) - f(x)) / h = f'(x) + h f''(x)/2 + O(h^2)``
  for the forward difference, but for the **central difference**

      (f(x+h) - f(x-h)) / 2h = f'(x) + h^2 f'''(x) / 6 + O(h^4)

  the even terms cancel, so the error is O(h^2);
* rounding: f is known only to about ``eps |f|``, and dividing by 2h amplifies that to
  ``eps |f| / h``.

Balancing ``h^2`` against ``eps / h`` gives ``h ~ eps^(1/3) ~ 6e-6`` in float64, with an error
near ``eps^(2/3) ~ 4e-11`` relative to the scale of f: the reason gradient checks run in float64
(in float32 the best error is about 1e-5 and checks become noise).

The **gradient** of a scalar f of an array x stacks the partial derivatives, one central
difference per element. The **Jacobian** ``J_ij = d f_i / d x_j`` of a vector function is the
same thing done column by column.

:func:`gradcheck` compares an analytic gradient (from backprop) with the numerical one using the
test ``|analytic - numerical| <= atol + rtol * |numerical|`` element by element, and reports the
worst element: which input, which index, both values. It perturbs float64 copies of the inputs,
so the caller's arrays are never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ArrayFn = Callable[..., object]


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with the finite-difference one."""


@dataclass(frozen=True)
class GradcheckResult:
    """Where analytic and numerical gradients differ most (in units of the tolerance)."""

    max_abs_error: float
    worst_input: int
    worst_index: tuple[int, ...]
    analytic: float
    numerical: float
    n_failed: int

    @property
    def passed(self) -> bool:
        return self.n_failed == 0


def _to_float64(x: object, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64)  # a copy: perturbations never reach the caller


def _scalar(value: object) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"f must return a scalar, got an array of shape {arr.shape}")
    out = float(arr.reshape(()))
    if not np.isfinite(out):
        raise ValueError(f"f returned a non-finite value {out}")
    return out


def numerical_gradient(
    f: Callable[[np.ndarray], object], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """Central-difference gradient of a scalar function: ``(f(x + h e_i) - f(x - h e_i)) / 2h``.

    ``x`` is any-shaped; the result has x's shape and dtype float64.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    x = _to_float64(x, "x")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views into x and grad
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        f_plus = _scalar(f(x))
        flat[i] = orig - eps
        f_minus = _scalar(f(x))
        flat[i] = orig
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def numerical_jacobian(
    f: Callable[[np.ndarray], object], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """Central-difference Jacobian ``J[i, j] = d f(x).flat[i] / d x.flat[j]``, shape (m, n)."""
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    x = _to_float64(x, "x")
    flat = x.reshape(-1)
    columns = []
    for j in range(flat.size):
        orig = flat[j]
        flat[j] = orig + eps
        f_plus = np.array(f(x), dtype=np.float64).reshape(-1)
        flat[j] = orig - eps
        f_minus = np.array(f(x), dtype=np.float64).reshape(-1)
        flat[j] = orig
        columns.append((f_plus - f_minus) / (2 * eps))  # (m,)
    if not columns:  # an empty x: a (m, 0) Jacobian
        return np.zeros((np.asarray(f(x)).size, 0))
    return np.stack(columns, axis=1)


def gradcheck(
    f: ArrayFn,
    inputs: np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...],
    analytic_grads: np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_on_failure: bool = True,
) -> GradcheckResult:
    """Check ``analytic_grads`` against central differences of the scalar ``f(*inputs)``.

    ``inputs`` is one array or a list/tuple of arrays (f is called with them as positional
    arguments, as float64 copies); ``analytic_grads`` gives ``df/d input`` for each, same shapes.
    An element passes when ``|analytic - numerical| <= atol + rtol * |numerical|``. On failure a
    :class:`GradcheckError` names the worst element (input, index, both values, the tolerance)
    unless ``raise_on_failure=False``; the result describes the worst element either way.
    """
    xs_raw = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    xs = [_to_float64(x, f"inputs[{i}]") for i, x in enumerate(xs_raw)]
    gs_raw = list(analytic_grads) if isinstance(analytic_grads, (list, tuple)) else [analytic_grads]
    if len(gs_raw) != len(xs):
        raise ValueError(f"got {len(xs)} inputs but {len(gs_raw)} analytic gradients")
    gs = [_to_float64(g, f"analytic_grads[{i}]") for i, g in enumerate(gs_raw)]
    for i, (x, g) in enumerate(zip(xs, gs, strict=True)):
        if x.shape != g.shape:
            raise ValueError(f"analytic_grads[{i}] has shape {g.shape}, inputs[{i}] has {x.shape}")

    worst_ratio, worst = -1.0, (0, (), 0.0, 0.0)  # (input, index, analytic, numerical)
    max_abs, n_failed = 0.0, 0
    for i, (x, g) in enumerate(zip(xs, gs, strict=True)):

        def f_i(xi: np.ndarray, i: int = i) -> object:
            return f(*xs[:i], xi, *xs[i + 1 :])

        num = numerical_gradient(f_i, x, eps)
        diff = np.abs(g - num)
        # the error in units of the tolerance; a NaN analytic gradient counts as infinitely bad
        ratio = np.nan_to_num(diff / (atol + rtol * np.abs(num)), nan=np.inf)
        n_failed += int(np.sum(ratio > 1.0))
        max_abs = max(max_abs, float(np.max(diff, initial=0.0)))
        if ratio.size:
            idx = np.unravel_index(int(np.argmax(ratio)), x.shape)
            if ratio[idx] > worst_ratio:
                worst_ratio = float(ratio[idx])
                worst = (i, tuple(int(k) for k in idx), float(g[idx]), float(num[idx]))

    wi, widx, a, n = worst
    result = GradcheckResult(max_abs, wi, widx, a, n, n_failed)
    if n_failed and raise_on_failure:
        total = sum(x.size for x in xs)
        raise GradcheckError(
            f"gradcheck failed: {n_failed} of {total} gradient elements outside tolerance; "
            f"worst is input {wi} at index {widx}: analytic {a:.10g}, numerical {n:.10g}, "
            f"|diff| {abs(a - n):.3g} > atol {atol:g} + rtol {rtol:g} * |numerical| "
            f"= {atol + rtol * abs(n):.3g} (eps={eps:g})"
        )
    return result
