"""Pruning: stop a trial whose learning curve is already worse than the typical trial's.

Most of a sweep's budget goes to bad configurations. A pruner watches each trial's intermediate
validation values ``v_t(s)`` (here: the trainer's evaluation every ``trainer.eval_every`` steps)
and stops the hopeless ones early. The **median rule** (Optuna's ``MedianPruner``, the
"median stopping rule" of Google Vizier, Golovin et al. 2017) for a loss to minimise: at an
evaluation step ``s`` past ``n_warmup_steps``, once ``n_startup_trials`` trials have completed,

    prune  ⇔  min_{s' ≤ s} v_t(s')  >  median { v_c(s) : c completed, c reported at s }

i.e. a trial is stopped when even its best value so far is worse than the median of the finished
trials at the same step. (``HyperbandPruner`` instead runs brackets of successive halving; the
median rule needs no budget bookkeeping and suits a fixed ``max_steps``.)

:class:`PruningHook` is a per-step hook of layer 3's :class:`~layer3_framework.trainer.Trainer`
(``run(cfg, dir, hooks=[hook])``): after every step it reads the evaluation records that have
appeared in ``trainer.history`` since it last looked, reports each one to the trial
(``trial.report(value, step)``), and raises :class:`optuna.TrialPruned` when
``trial.should_prune()`` (as :class:`Pruned`, both an ``optuna.TrialPruned`` and layer 0's
``RunStopped``). The exception ends the run (the trainer does not catch it): the run's manifest
records it ``stopped`` with the reason and no traceback, and Optuna records the trial as
``PRUNED``, its intermediate values kept in the study.
"""

from __future__ import annotations

from typing import Any

import optuna

from layer0_math.lab import RunStopped


class Pruned(optuna.TrialPruned, RunStopped):
    """A trial stopped by the pruner: ``PRUNED`` for Optuna, ``stopped`` in the run record."""


class PruningHook:
    """Reports each new ``eval/<metric>`` record to ``trial``; raises ``TrialPruned`` when the
    study's pruner says so. ``metric``: a key of the task's validation (``loss``, ``accuracy``)."""

    def __init__(self, trial: optuna.Trial, metric: str = "loss") -> None:
        self.trial = trial
        self.key = f"eval/{metric}"
        self.seen = 0  # records of trainer.history already read
        self.reported: list[tuple[int, float]] = []  # (step, value) in report order

    def __call__(self, trainer: Any) -> None:
        new, self.seen = trainer.history[self.seen :], len(trainer.history)
        for record in new:
            if self.key not in record:
                continue
            step, value = int(record["step"]), float(record[self.key])
            self.trial.report(value, step)
            self.reported.append((step, value))
            if self.trial.should_prune():
                raise Pruned(
                    f"trial {self.trial.number} pruned at step {step}: {self.key}={value:.4g}"
                )


def median_pruner(n_startup_trials: int = 4, n_warmup_steps: int = 0) -> optuna.pruners.BasePruner:
    """The median rule above, judged at every evaluation step (``interval_steps=1``)."""
    return optuna.pruners.MedianPruner(
        n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps, interval_steps=1
    )
