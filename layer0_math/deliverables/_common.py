"""Plotting helpers shared by layer 0's deliverables (orchestration, not library code)."""

from __future__ import annotations

import numpy as np


def log_spaced(n: int, points: int = 1000) -> np.ndarray:
    """About ``points`` distinct indices in [0, n), log-spaced: enough to draw a log-x curve."""
    return np.unique(np.geomspace(1, n, points).astype(int)) - 1
