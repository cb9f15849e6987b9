"""Floating point: what a number in a computer is, and the few tricks that keep sums honest.

A binary floating-point number is ``(-1)^s * 1.f * 2^e`` with ``p`` fraction bits ``f`` and an
exponent ``e`` in a fixed range. Two consequences rule numerical deep learning:

**Machine epsilon** is the gap between 1 and the next representable number,

    eps = 2^-p        float64: 2^-52,  float32: 2^-23,  float16: 2^-10,  bfloat16: 2^-7.

Every arithmetic result is rounded: ``fl(a op b) = (a op b)(1 + d)`` with ``|d| <= eps/2``
(round to nearest). :func:`machine_epsilon` finds eps by the classic halving loop: halve ``e``
until ``1 + e/2`` rounds back to 1. bfloat16 (8 exponent bits like float32, 7 fraction bits) has
no numpy dtype; :func:`to_bfloat16` emulates it by zeroing the low 16 bits of a float32, i.e.
rounding toward zero.

**Range.** The largest finite number is ``(2 - eps) * 2^emax``: 65504 for float16 but about
3.4e38 for bfloat16 and float32. ``exp(12)`` already overflows float16, which is why mixed
precision keeps softmax and losses in float32, and why :func:`largest_finite` matters.

**Catastrophic cancellation.** Subtracting two nearly equal rounded numbers keeps their absolute
error but loses their leading digits, so the relative error of the difference is
``eps * |a| / |a - b|``. The textbook quadratic formula computes the small root of
``x^2 + 1e8 x + 1`` as ``(-b + sqrt(b^2 - 4ac)) / 2a``, a difference of two numbers near 1e8:
nearly all digits are lost. :func:`quadratic_roots` (``stable=True``) computes the large root
without cancellation and the small one from Vieta's formula ``x1 * x2 = c / a``.

**Stable log-sum-exp.** ``log sum_i exp(x_i)`` overflows for ``x_i > 709`` (float64) or
``x_i > 11`` (float16). Shifting by ``m = max_i x_i`` is exact algebra and makes every exponent
``<= 0``:

    logsumexp(x) = m + log sum_i exp(x_i - m),
    softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m),
    log_softmax(x)_i = x_i - logsumexp(x).

**Kahan summation.** Adding n numbers one by one accumulates error up to ``(n - 1) eps sum|x_i|``.
Kahan's compensated sum carries the rounding error of each addition in a second variable ``c``
and feeds it back into the next one, giving an error bound ``2 eps sum|x_i|`` independent of n:

    y = x_i - c;  t = s + y;  c = (t - s) - y;  s = t
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

FLOAT_FORMATS = ("float16", "bfloat16", "float32", "float64")


def to_bfloat16(x: np.ndarray | float) -> np.ndarray:
    """Round float32 values to bfloat16 by truncating their low 16 bits (round toward zero).

    Returns a float32 array whose values are exactly representable in bfloat16. NaN stays NaN.
    """
    x32 = np.asarray(x, dtype=np.float32)
    bits = x32.view(np.uint32) & np.uint32(0xFFFF0000)
    out = bits.view(np.float32)
    return np.where(np.isnan(x32), np.float32(np.nan), out)


def _rounder(fmt: str) -> Callable[[float], float]:
    """A function that rounds a Python float to the given format (and returns it as a float)."""
    if fmt == "bfloat16":
        return lambda v: float(to_bfloat16(np.float32(v)))
    if fmt in ("float16", "float32", "float64"):
        dtype = np.dtype(fmt)
        return lambda v: float(dtype.type(v))
    raise ValueError(f"unknown floating-point format {fmt!r}; expected one of {FLOAT_FORMATS}")


def _format_name(dtype: str | np.dtype | type) -> str:
    if isinstance(dtype, str) and dtype == "bfloat16":
        return dtype
    try:
        name = np.dtype(dtype).name
    except TypeError as err:
        raise ValueError(
            f"unknown floating-point format {dtype!r}; expected one of {FLOAT_FORMATS}"
        ) from err
    if name not in FLOAT_FORMATS:
        raise ValueError(f"unknown floating-point format {name!r}; expected one of {FLOAT_FORMATS}")
    return name


def machine_epsilon(dtype: str | np.dtype | type) -> float:
    """The gap between 1 and the next representable number, found by the halving loop.

    ``dtype`` is ``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"`` or a numpy dtype.
    Every intermediate ``1 + eps/2`` is rounded to the format, so the loop measures the
    format, not Python's float64.
    """
    fl = _rounder(_format_name(dtype))
    eps = 1.0
    while fl(1.0 + fl(eps / 2)) != 1.0:
        eps = fl(eps / 2)
    return eps


def largest_finite(dtype: str | np.dtype | type) -> float:
    """The largest finite number of a format, ``(2 - eps) * 2^emax``, found by doubling."""
    name = _format_name(dtype)
    fl = _rounder(name)
    with np.errstate(over="ignore"):
        power = 1.0
        while math.isfinite(fl(power * 2)):
            power = fl(power * 2)
        return fl(power * fl(2.0 - machine_epsilon(name)))


def quadratic_roots(a: float, b: float, c: float, *, stable: bool = True) -> tuple[float, float]:
    """The two real roots of ``a x^2 + b x + c`` as (larger-magnitude, smaller-magnitude).

    ``stable=False`` is the textbook formula ``(-b +- sqrt(b^2 - 4ac)) / 2a`` (kept to show the
    cancellation); ``stable=True`` computes ``q = -(b + sign(b) sqrt(b^2 - 4ac)) / 2`` (a sum of
    same-sign terms, no cancellation), then ``x1 = q / a`` and ``x2 = c / q``.
    """
    if a == 0:
        raise ValueError(f"a must be non-zero for a quadratic, got a={a}")
    disc = b * b - 4 * a * c
    if disc < 0:
        raise ValueError(f"complex roots: b^2 - 4ac = {disc} < 0 (a={a}, b={b}, c={c})")
    sqrt_disc = math.sqrt(disc)
    if not stable:
        r1, r2 = (-b - sqrt_disc) / (2 * a), (-b + sqrt_disc) / (2 * a)
        return (r1, r2) if abs(r1) >= abs(r2) else (r2, r1)
    q = -(b + math.copysign(sqrt_disc, b)) / 2
    if q == 0:  # b == 0 and c == 0: a double root at zero
        return 0.0, 0.0
    return q / a, c / q


def logsumexp(x: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``log(sum(exp(x), axis))`` without overflow, by shifting with the maximum."""
    x = np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # an all -inf row gives log(0) = -inf, not nan
    with np.errstate(divide="ignore"):  # log(0) = -inf is the right answer there
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(x_i) / sum_j exp(x_j)`` along ``axis``; every exponent is ``<= 0`` after the shift."""
    x = np.asarray(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x_i - logsumexp(x)`` along ``axis``: exact where ``log(softmax(x))`` would give -inf."""
    x = np.asarray(x)
    return x - logsumexp(x, axis=axis, keepdims=True)


def kahan_sum(x: np.ndarray) -> np.floating:
    """Compensated (Kahan) summation of all elements, carried out in the array's own dtype."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"kahan_sum needs a floating-point array, got dtype {x.dtype}")
    total = x.dtype.type(0)
    compensation = x.dtype.type(0)
    for value in x.ravel():
        y = value - compensation  # the new term, corrected by the error of the last addition
        t = total + y  # low-order bits of y are lost here ...
        compensation = (t - total) - y  # ... and recovered here (algebraically zero)
        total = t
    return total
