"""Learning-rate schedules as closed forms of the step: warm-up, cosine, one-cycle, 1/√t, WSD.

Each schedule is a factor ``f(t)`` multiplying the optimiser's base rate η at step t (0-based,
the t-th call of ``optimizer.step()``), built as ``torch.optim.lr_scheduler.LambdaLR`` so that
the trainer steps it, checkpoints it and resumes it like any torch scheduler. With ``w`` warm-up
steps, ``T`` total steps and floor ``m = min_lr_fraction``::

    ramp(t)          = (t + 1) / (w + 1)                       for t < w   (then 1 at t = w)
    constant         = ramp(t), then 1
    warmup_cosine    = ramp(t), then m + (1 − m)(1 + cos(π (t − w)/(T − w)))/2
    inverse_sqrt     = ramp(t), then √((w + 1)/(t + 1))         (Vaswani et al. 2017's "Noam")
    wsd              = ramp(t), then 1 until T − D, then decay(p) with p = (t − T + D)/D:
                       linear 1 − (1 − m)p, cosine m + (1 − m)(1 + cos πp)/2, sqrt 1 − (1 − m)√p
    one_cycle        = cosine from 1/div up to 1 over the first pct·T − 1 steps, then cosine
                       down to 1/(div·final_div) at step T − 1 (Smith & Topin 2019; OneCycleLR)

The ramp is torch's ``LinearLR(start_factor=1/(w+1), total_iters=w)``; the cosine part is
``CosineAnnealingLR(T_max=T−w, eta_min=m·η)`` after it (``SequentialLR``), so a cosine reaches
its floor at step T, one past the last update.

When each helps: warm-up lets Adam's second-moment estimate settle before full-size steps (and
avoids the early blow-ups of large-batch and Transformer training); cosine is the usual
fixed-budget decay; one-cycle's high middle rate regularises and trains CNNs fast (super-
convergence); inverse-√t needs no budget (the original Transformer); WSD (warmup-stable-decay,
Hu et al. 2024 MiniCPM, Hägele et al. 2024) holds the peak rate and decays only in the last
D = decay_fraction·T steps, so one long run can be branched into decays at several budgets
and matches cosine at each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

SCHEDULES = ("constant", "warmup_cosine", "one_cycle", "inverse_sqrt", "wsd")
WSD_DECAYS = ("linear", "cosine", "sqrt")


def _check_steps(total_steps: int, warmup_steps: int) -> None:
    if not total_steps > 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
        )


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _warmed(warmup_steps: int, after: Callable[[int], float]) -> Callable[[int], float]:
    """``ramp(t)`` for t < w, then ``after(t)``."""

    def factor(t: int) -> float:
        return (t + 1) / (warmup_steps + 1) if t < warmup_steps else after(t)

    return factor


def _cosine(progress: float, floor: float) -> float:
    """From 1 at progress 0 down to ``floor`` at progress 1."""
    return floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2


def constant(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """The base rate throughout, after an optional linear warm-up."""
    _check_steps(total_steps, warmup_steps)
    return LambdaLR(optimizer, _warmed(warmup_steps, lambda t: 1.0))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    min_lr_fraction: float = 0.0,
) -> LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine down to ``min_lr_fraction · η``."""
    _check_steps(total_steps, warmup_steps)
    _check_fraction("min_lr_fraction", min_lr_fraction)
    span = max(1, total_steps - warmup_steps)
    return LambdaLR(
        optimizer,
        _warmed(warmup_steps, lambda t: _cosine((t - warmup_steps) / span, min_lr_fraction)),
    )


def one_cycle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> LambdaLR:
    """One cycle of the rate (OneCycleLR's two-phase cosine, without momentum cycling)."""
    _check_steps(total_steps, 0)
    if not 0.0 < pct_start < 1.0:
        raise ValueError(f"pct_start must be in (0, 1), got {pct_start}")
    if not (div_factor > 0 and final_div_factor > 0):
        raise ValueError(
            f"div_factor and final_div_factor must be > 0, got {div_factor}, {final_div_factor}"
        )
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    peak = float(pct_start * total_steps) - 1  # the step at which the rate is highest
    if not peak > 0:
        raise ValueError(
            f"pct_start * total_steps must be > 1 (a rise of at least one step), got "
            f"{pct_start} * {total_steps}"
        )
    last = float(total_steps - 1)

    def factor(t: int) -> float:
        if t <= peak:
            return end_at(start, 1.0, t / peak)
        return end_at(1.0, end, (t - peak) / (last - peak))

    def end_at(first: float, final: float, progress: float) -> float:
        return final + (first - final) * (1 + math.cos(math.pi * progress)) / 2

    return LambdaLR(optimizer, factor)


def inverse_sqrt(optimizer: torch.optim.Optimizer, warmup_steps: int) -> LambdaLR:
    """Linear warm-up, then ``η √((w + 1)/(t + 1))``: no total length needed."""
    if not warmup_steps >= 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    scale = warmup_steps + 1
    return LambdaLR(optimizer, _warmed(warmup_steps, lambda t: math.sqrt(scale / (t + 1))))


def _wsd_decay(shape: str, floor: float) -> Callable[[float], float]:
    shapes = {
        "linear": lambda p: 1 - (1 - floor) * p,
        "cosine": lambda p: _cosine(p, floor),
        "sqrt": lambda p: 1 - (1 - floor) * math.sqrt(p),
    }
    if shape not in shapes:
        raise ValueError(f"unknown WSD decay {shape!r}; expected one of {WSD_DECAYS}")
    return shapes[shape]


def wsd(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    decay_fraction: float = 0.2,
    min_lr_fraction: float = 0.0,
    decay: str = "linear",
) -> LambdaLR:
    """Warm-up, a stable peak, then a decay over the last ``decay_fraction`` of the steps."""
    _check_steps(total_steps, warmup_steps)
    _check_fraction("decay_fraction", decay_fraction)
    _check_fraction("min_lr_fraction", min_lr_fraction)
    decay_steps = round(decay_fraction * total_steps)
    if warmup_steps + decay_steps > total_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} + decay steps {decay_steps} "
            f"(decay_fraction={decay_fraction}) exceed total_steps={total_steps}"
        )
    shape = _wsd_decay(decay, min_lr_fraction)
    decay_start = total_steps - decay_steps

    def after(t: int) -> float:
        return 1.0 if t < decay_start else shape((t - decay_start) / decay_steps)

    return LambdaLR(optimizer, _warmed(warmup_steps, after))


def make_schedule(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    **kw: Any,
) -> LRScheduler:
    """The schedule ``name`` over ``total_steps``; ``kw`` goes to its function.

    For ``one_cycle`` the rise is ``pct_start`` of the run; ``warmup_steps > 0`` sets it to
    ``warmup_steps / total_steps`` instead.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
    _check_steps(total_steps, warmup_steps)
    if name == "one_cycle":
        if warmup_steps > 0:
            kw = {**kw, "pct_start": warmup_steps / total_steps}
        return one_cycle(optimizer, total_steps, **kw)
    if name == "inverse_sqrt":
        return inverse_sqrt(optimizer, warmup_steps, **kw)
    build = {"constant": constant, "warmup_cosine": warmup_cosine, "wsd": wsd}[name]
    return build(optimizer, total_steps, warmup_steps, **kw)


def named_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    name: str,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_fraction: float | None = None,
    **kw: Any,
) -> LRScheduler:
    """:func:`make_schedule` with the optimizer first, for a Hydra ``_partial_`` config.

    ``warmup_fraction`` (of ``total_steps``, rounded down) replaces ``warmup_steps`` so one
    config fits runs of any length.
    """
    if warmup_fraction is not None:
        _check_fraction("warmup_fraction", warmup_fraction)
        warmup_steps = int(warmup_fraction * total_steps)
    return make_schedule(name, optimizer, total_steps=total_steps, warmup_steps=warmup_steps, **kw)
