"""The objective: one trial is one run of layer 3's Hydra pipeline.

    θ ~ sampler            (search_space.sample: lr, weight decay, width, batch size, optimiser)
    cfg = compose(base + overrides(θ))
    run(cfg, <trials_dir>/trial_<n>, hooks=[PruningHook])   → intermediate validation reported
    f(θ) = test_<metric> of the run                          → the study's value for the trial

The trial stores what reproduces it as user attributes: its ``overrides`` (base + sampled), its
``run_dir``, the ``worker`` that ran it and, when it finished, ``test_accuracy``. The last
validation (at ``max_steps``, after the last hook call) is reported too, so each trial's curve in
the study ends at its final value.

A pruned trial raises :class:`~layer5_training.tuning.pruning.Pruned` (an
``optuna.TrialPruned``) out of the run: its manifest records it ``stopped`` with the pruning
message, and the study records the trial ``PRUNED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from layer3_framework.train import compose, run
from layer5_training.tuning.pruning import PruningHook
from layer5_training.tuning.search_space import sample, to_overrides
from layer5_training.tuning.study import SweepSpec


def trial_dir(spec: SweepSpec, number: int) -> Path:
    return Path(spec.trials_dir) / f"trial_{number:03d}"


@dataclass
class Objective:
    """``objective(trial) -> value``: train the trial's config, return its validation metric."""

    spec: SweepSpec
    worker: str = "main"  # recorded on each trial: which process ran it

    def __call__(self, trial: optuna.Trial) -> float:
        spec = self.spec
        overrides = [*spec.base, *to_overrides(sample(trial, spec.space))]
        out = trial_dir(spec, trial.number)
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("run_dir", str(out))
        trial.set_user_attr("worker", self.worker)
        hook = PruningHook(trial, spec.metric)
        metrics = run(
            compose(overrides),
            out,
            progress=False,
            parent_id=spec.parent_id,
            hooks=[hook],
        )
        value = float(metrics[f"test_{spec.metric}"])
        trial.report(value, int(metrics["step"]))
        _record(trial, metrics)
        return value


def _record(trial: optuna.Trial, metrics: dict[str, Any]) -> None:
    for key in ("test_accuracy", "train_seconds"):
        if key in metrics:
            trial.set_user_attr(key, float(metrics[key]))
