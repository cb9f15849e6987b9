"""One short training run as a function: model, optimiser, learning rate, seed in; curves out.

A benchmark or a stability study trains the same model dozens of times with one thing changed.
Going through the Hydra pipeline per run would write a full run record each time; instead the
data module is set up once and :func:`train_curves` builds, per run, only what must be new:

1. ``seed_everything(seed)``, then the model (its initial weights a function of the seed) and
   the task (layer 3's :class:`~layer3_framework.task.Classification` for a plain classifier or
   language model: mean cross-entropy over the last dimension);
2. the optimiser by name from layer 5's registry (``make_optimizer(name, params, lr=…)``) and
   its schedule (``make_schedule(name, optimizer, total_steps=…, warmup_steps=…)``);
3. a :class:`~layer5_training.stability.ClipRecorder` on the optimiser (the pre-clip gradient
   norm of every step, then the clipping asked for) and a
   :class:`~layer5_training.stability.DivergenceGuard`;
4. layer 3's :class:`~layer3_framework.trainer.Trainer` (no checkpoints, no logger), which
   trains ``steps`` steps and evaluates on the held-out split every ``eval_every`` steps.

A run that diverges (the trainer's non-finite stop, or the guard's ``factor`` × initial loss) is
*recorded* as diverged, with the step it got to and its curves so far: it never raises. What a
run costs in optimiser memory is measured, not assumed: the bytes of every tensor in
``optimizer.state`` divided by the number of trained parameters (Adam: two fp32 moments, 8 B;
Adafactor's factored second moment: far less than 4 B per matrix entry).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from layer3_framework.data import DataModule
from layer3_framework.repro import seed_everything
from layer3_framework.trainer import Hook, NonFiniteLossError, Trainer, TrainerConfig
from layer5_training.optim.registry import make_optimizer
from layer5_training.optim.schedules import make_schedule
from layer5_training.stability import ClipRecorder, DivergenceGuard, LossDiverged


@dataclass
class RunSpec:
    """One run: which optimiser at which (peak) rate, for how long, clipped how."""

    optimizer: str
    lr: float
    seed: int = 0
    steps: int = 200
    hyper: dict[str, Any] = field(default_factory=dict)  # the optimiser's other arguments
    schedule: str = "warmup_cosine"
    warmup_steps: int = 0
    clip: str = "none"  # none | norm | value (see stability.ClipRecorder)
    clip_threshold: float | None = None
    divergence_factor: float = 3.0  # diverged: loss > factor x the first logged loss
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate once, at the end
    eval_batches: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class RunResult:
    """What one run measured. Lists are plain floats so the result is JSON as it stands."""

    spec: dict[str, Any]
    diverged: bool
    steps_done: int
    stop_reason: str  # "" when the run finished
    train_steps: list[int]  # the steps at which the training loss was logged
    train_loss: list[float]  # mean over each logging window
    val_steps: list[int]
    val_loss: list[float]
    grad_norms: list[float]  # pre-clip ‖g‖₂ of every step
    seconds: float  # wall time of the whole run (training and evaluation)
    state_bytes_per_param: float

    @property
    def final_val(self) -> float:
        """The last validation loss of a finished run; NaN for a diverged one."""
        if self.diverged or not self.val_loss:
            return math.nan
        return self.val_loss[-1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "final_val": self.final_val}


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimiser keeps in ``optimizer.state`` (moments, buffers)."""
    return sum(
        v.numel() * v.element_size()
        for state in optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    )


def _build(
    build_model: Callable[[], nn.Module], spec: RunSpec
) -> tuple[nn.Module, torch.optim.Optimizer, Any, ClipRecorder]:
    seed_everything(spec.seed)
    model = build_model()
    optimizer = make_optimizer(spec.optimizer, model.parameters(), lr=spec.lr, **spec.hyper)
    schedule = make_schedule(
        spec.schedule, optimizer, total_steps=spec.steps, warmup_steps=spec.warmup_steps
    )
    recorder = ClipRecorder(spec.clip, spec.clip_threshold)
    recorder.attach(optimizer)
    return model, optimizer, schedule, recorder


def _curves(history: list[dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in history if key in r]
    return [int(r["step"]) for r in rows], [float(r[key]) for r in rows]


def train_curves(
    build_model: Callable[[], nn.Module],
    data: DataModule,
    spec: RunSpec,
    *,
    device: str = "cpu",
    hooks: Sequence[Hook] = (),
) -> RunResult:
    """Train ``build_model()`` on ``data`` (already set up) as ``spec`` says; never raises on
    divergence. ``hooks`` run after every step, after the divergence guard."""
    model, optimizer, schedule, recorder = _build(build_model, spec)
    cfg = TrainerConfig(
        max_steps=spec.steps,
        log_every=spec.log_every,
        eval_every=spec.eval_every,
        eval_batches=spec.eval_batches,
        progress=False,
    )
    trainer = Trainer(
        model,
        optimizer,
        data.train_loader(spec.seed),
        cfg,
        device=device,
        scheduler=schedule,
        eval_loader=data.eval_loader(spec.seed),
        hooks=[DivergenceGuard(spec.divergence_factor), *hooks],
    )
    start, reason = time.perf_counter(), ""
    try:
        trainer.fit()
    except (NonFiniteLossError, LossDiverged) as exc:
        reason = str(exc)
    seconds = time.perf_counter() - start
    train_steps, train_loss = _curves(trainer.history, "train/loss")
    val_steps, val_loss = _curves(trainer.history, "eval/loss")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return RunResult(
        spec=asdict(spec),
        diverged=bool(reason),
        steps_done=trainer.step,
        stop_reason=reason,
        train_steps=train_steps,
        train_loss=train_loss,
        val_steps=val_steps,
        val_loss=val_loss,
        grad_norms=[float(v) for v in recorder.history()],
        seconds=seconds,
        state_bytes_per_param=state_bytes(optimizer) / n_params,
    )


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation; NaN for both if any value is NaN."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        return math.nan, math.nan
    return float(v.mean()), float(v.std())
