"""Counting a classifier's answers: accuracy and the confusion matrix, the project's one copy.

The confusion matrix ``M[t, p]`` counts the samples of true class t predicted as p; accuracy is
its trace over its sum. Everything else a classifier is judged by (per-class precision, recall,
F1; macro and micro averages) is arithmetic on ``M`` and lives with the metrics of layer 3.
Plain numpy, so the scratch layers use it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy", "confusion_matrix", "as_labels"]


def as_labels(y: Any, name: str) -> np.ndarray:
    """``y`` as a 1-D integer numpy array (a torch tensor is moved to the CPU first)."""
    if hasattr(y, "detach"):  # a torch tensor, without importing torch here
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got {y.dtype} {y.shape}")
    return y


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the labels."""
    t, p = as_labels(y_true, "y_true"), as_labels(y_pred, "y_pred")
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must have the same non-zero size")
    return float((t == p).mean())


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """``M[t, p]`` counts of true class t predicted as p, (num_classes, num_classes) int64."""
    t, p = as_labels(y_true, "y_true"), as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    for name, y in (("y_true", t), ("y_pred", p)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    counts = np.bincount(t * num_classes + p, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(np.int64)
