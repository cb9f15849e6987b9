"""Layer-1 test helper: a float comparison that teaches: what, expected, got, by how much."""

from __future__ import annotations

import math


def assert_close(got: float, expected: float, what: str, tol: float = 1e-10) -> None:
    """``got`` within ``tol`` of ``expected`` (absolute + relative, as np.isclose), else say so."""
    __tracebackhide__ = True  # pytest shows the caller, not this helper
    got, expected = float(got), float(expected)
    diff = abs(got - expected)
    if diff <= tol + tol * abs(expected):  # False for NaN, as it must be
        return
    rel = f", {diff / abs(expected):.3g} relative" if expected and math.isfinite(diff) else ""
    raise AssertionError(
        f"{what}: expected {expected!r}, got {got!r}, off by {diff:.3g}{rel} (tolerance {tol:g})"
    )
