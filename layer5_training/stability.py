"""Measuring training stability: divergence, loss spikes, and the gradient norm over time.

Three stated rules turn a loss curve and a gradient-norm series into counts that can be compared
across runs (layer 5's ``clipping_stability`` and ``optimizer_benchmark`` use them):

- **Divergence.** A run diverged when a training loss is non-finite or exceeds ``factor`` times
  its first loss, ``∃t: ¬finite(L_t) ∨ L_t > factor · L_1``. :class:`DivergenceGuard`, a trainer
  hook, stops such a run as soon as the logged loss crosses the line (layer 3's trainer already
  stops on a non-finite loss with :class:`~layer3_framework.trainer.NonFiniteLossError`).
- **Loss spikes.** Step t is a spike step when ``L_t > ratio · median(L_{t-k}, …, L_{t-1})`` (the
  median of the k previous losses, so a spike does not raise its own baseline); a *spike* is a
  maximal run of consecutive spike steps, counted once.
- **Gradient-norm histograms over time.** The pre-clip global norm ``‖g_t‖₂`` of every step,
  binned in log₁₀ ‖g‖ (rows) per window of steps (columns): a heatmap whose upward drift shows a
  run heading for divergence, and whose ceiling shows what clipping never lets through.

**Measuring the pre-clip norm honestly.** The trainer's hooks run after the optimizer step and
after the gradients were zeroed, so they cannot see ``g``. :class:`ClipRecorder` is therefore an
optimizer *step pre-hook* (``Optimizer.register_step_pre_hook``): it runs inside
``optimizer.step()``, after backward and the trainer's (disabled) clipping, reads ``‖g‖₂`` and
only then clips (by global norm, by value, or not at all) with layer 5's from-scratch
:func:`~layer5_training.optim.clipping.clip_grad_norm_` / ``clip_grad_value_``. So the norm it
records is exactly the one clipping acts on, once per optimizer step, whatever ``grad_accum``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from layer5_training.optim.clipping import clip_grad_norm_, clip_grad_value_, grad_norm

CLIP_MODES = ("none", "norm", "value")


class LossDiverged(RuntimeError):
    """The training loss crossed the divergence line (``factor`` × its first value)."""


# ----------------------------------------------------------------------------- the rules


def diverged(losses: Sequence[float], factor: float) -> bool:
    """True when a loss is non-finite or exceeds ``factor`` × the first loss."""
    if factor <= 1:
        raise ValueError(f"divergence factor must be > 1, got {factor}")
    values = np.asarray(losses, dtype=np.float64)
    if values.size == 0:
        return False
    if not np.isfinite(values).all():
        return True
    return bool((values > factor * values[0]).any())


def spike_steps(losses: Sequence[float], ratio: float = 2.0, window: int = 20) -> np.ndarray:
    """Boolean per step: ``L_t > ratio · median(L_{t-window} … L_{t-1})`` (False for the first
    ``window`` steps, which have no full baseline). Non-finite losses count as spikes."""
    if ratio <= 1 or window < 1:
        raise ValueError(f"spike rule needs ratio > 1 and window >= 1, got {ratio}, {window}")
    values = np.asarray(losses, dtype=np.float64)  # (T,)
    spikes = np.zeros(values.size, dtype=bool)
    for t in range(window, values.size):
        baseline = np.median(values[t - window : t])
        spikes[t] = not math.isfinite(values[t]) or values[t] > ratio * baseline
    return spikes


def count_spikes(losses: Sequence[float], ratio: float = 2.0, window: int = 20) -> int:
    """The number of spikes: maximal runs of consecutive spike steps (see :func:`spike_steps`)."""
    steps = spike_steps(losses, ratio, window)
    onsets = steps & ~np.concatenate([[False], steps[:-1]])  # a spike step after a calm one
    return int(onsets.sum())


def log_edges(values: Sequence[float] | np.ndarray, n_bins: int = 24) -> np.ndarray:
    """``n_bins + 1`` edges evenly spaced in log₁₀ from the smallest to the largest finite,
    positive value (widened by a hair so both ends fall inside)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        raise ValueError("no finite positive values to bin")
    lo, hi = np.log10(v.min()), np.log10(v.max())
    pad = max(1e-9, 1e-6 * (hi - lo))
    return np.logspace(lo - pad, hi + pad, n_bins + 1)


def histogram_over_time(norms: np.ndarray, edges: np.ndarray, steps_per_column: int) -> np.ndarray:
    """Counts (n_bins, n_columns): column j bins the values of steps ``[j·w, (j+1)·w)`` with the
    given (increasing) edges, as ``numpy.histogram`` would (right edge closed in the last bin);
    non-finite values and values outside the edges are left out. ``norms`` is (steps,) or
    (runs, steps); the runs' counts add up (NaN marks a step a run never reached)."""
    if steps_per_column < 1:
        raise ValueError(f"steps_per_column must be >= 1, got {steps_per_column}")
    values = np.atleast_2d(np.asarray(norms, dtype=np.float64))  # (R, T)
    n_cols = -(-values.shape[1] // steps_per_column)
    column = np.broadcast_to(np.arange(values.shape[1]) // steps_per_column, values.shape)
    row = np.searchsorted(edges, values, side="right") - 1  # bin i holds edges[i] <= v < edges[i+1]
    row = np.where(values == edges[-1], len(edges) - 2, row)  # numpy's closed last bin
    keep = np.isfinite(values) & (row >= 0) & (row < len(edges) - 1)
    counts = np.zeros((len(edges) - 1, n_cols), dtype=np.int64)
    np.add.at(counts, (row[keep], column[keep]), 1)
    return counts


# ----------------------------------------------------------------------------- the hooks


class ClipRecorder:
    """An optimizer step pre-hook: record the global gradient norm ``‖g‖₂``, then clip.

    ``mode`` is "none", "norm" (``g ← g · min(1, c/‖g‖)``) or "value" (``g ← clamp(g, −c, c)``)
    with threshold ``c``. :attr:`norms` holds one pre-clip norm per optimizer step (a 0-d tensor
    each, read only at the end, so recording costs no host-device sync).
    """

    def __init__(self, mode: str = "none", threshold: float | None = None) -> None:
        if mode not in CLIP_MODES:
            raise ValueError(f"unknown clip mode {mode!r}; expected one of {CLIP_MODES}")
        if (mode == "none") != (threshold is None):
            raise ValueError(
                f"clip mode {mode!r} with threshold {threshold}: 'none' takes no threshold, "
                "'norm' and 'value' need one"
            )
        if threshold is not None and not threshold > 0:
            raise ValueError(f"clip threshold must be > 0, got {threshold}")
        self.mode, self.threshold = mode, threshold
        self.norms: list[torch.Tensor] = []

    def attach(self, optimizer: torch.optim.Optimizer) -> Any:
        """Register on ``optimizer``; returns the handle (``handle.remove()`` detaches)."""
        return optimizer.register_step_pre_hook(self._before_step)

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.norms.append(grad_norm(params).detach())
        if self.mode == "norm":
            clip_grad_norm_(params, self.threshold)
        elif self.mode == "value":
            clip_grad_value_(params, self.threshold)

    def history(self) -> np.ndarray:
        """The pre-clip norms, one per step, as float64 (steps,)."""
        if not self.norms:
            return np.zeros(0)
        return torch.stack(self.norms).double().cpu().numpy()


class DivergenceGuard:
    """A trainer hook that raises :class:`LossDiverged` once a logged training loss exceeds
    ``factor`` × the first logged one (the trainer logs every ``log_every`` steps)."""

    def __init__(self, factor: float) -> None:
        if factor <= 1:
            raise ValueError(f"divergence factor must be > 1, got {factor}")
        self.factor = factor

    def __call__(self, trainer: Any) -> None:
        losses = [r["train/loss"] for r in trainer.history if "train/loss" in r]
        if losses and losses[-1] > self.factor * losses[0]:
            raise LossDiverged(
                f"training loss {losses[-1]:.4g} at step {trainer.history[-1]['step']} exceeds "
                f"{self.factor} x the first logged loss {losses[0]:.4g}"
            )
