"""Workers: independent processes that pull trials from one shared study.

A worker is only a storage URL and a study name (the rest is in the study, see
:mod:`layer5_training.tuning.study`), so the same command runs on this machine or on another one
that reaches the database::

    python -m layer5_training.tuning worker --storage sqlite:///runs/.../study.db \\
        --study sweep --trials 12 --worker 1

Each worker loops: ask the study for a trial (its TPE sampler reads every finished trial, whoever
ran it), train it, tell the study the result. Nothing is coordinated but the database: the
trial numbers are handed out by it, the pruner compares against the other workers' curves, and
a worker that dies leaves its trial ``RUNNING`` while the others carry on. :func:`launch` starts
``n`` such processes here and yields as trials finish (a progress bar's ticks).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna

from layer3_framework.trainer import NonFiniteLossError
from layer5_training.tuning.objective import Objective
from layer5_training.tuning.study import SweepError, check_trials, load_study

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
FAILED = (optuna.trial.TrialState.FAIL,)
POLL_S = 0.5


def worker_id(index: int) -> str:
    """``<index>@<host>:<pid>``: which process ran a trial (stored on the trial)."""
    return f"{index}@{socket.gethostname()}:{os.getpid()}"


def work(url: str, name: str, trials: int, index: int = 0) -> int:
    """Run ``trials`` trials of study ``name`` at ``url`` in this process; return how many ran.

    A trial whose loss diverges (:class:`NonFiniteLossError`, e.g. a learning rate far too high)
    is recorded ``FAIL`` and the worker goes on; any other error stops the worker.
    """
    check_trials(trials)
    study, spec = load_study(url, name, worker=index)
    me = worker_id(index)
    study.optimize(Objective(spec, worker=me), n_trials=trials, catch=(NonFiniteLossError,))
    return sum(t.user_attrs.get("worker") == me for t in study.get_trials(deepcopy=False))


def command(url: str, name: str, trials: int, index: int) -> list[str]:
    """The command line of worker ``index``."""
    return [
        *(sys.executable, "-m", "layer5_training.tuning", "worker"),
        *("--storage", url, "--study", name, "--trials", str(trials), "--worker", str(index)),
    ]


@dataclass
class Launch:
    """How :func:`launch` starts its workers."""

    n_workers: int = 2
    trials_per_worker: int = 1
    threads_per_worker: int = 1  # OMP/MKL threads of each worker (workers × threads ≤ cores)
    log_dir: Path = Path()


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("DLSTACK_PROGRESS", "0")
    return env


def launch(url: str, name: str, how: Launch) -> Iterator[int]:
    """Start ``how.n_workers`` worker processes on study ``name``; yield once per trial that
    finishes (complete, pruned or failed), until they all exit. A worker that exits non-zero
    is a :class:`SweepError` quoting the end of its log (``<log_dir>/worker_<i>.log``)."""
    check_trials(how.n_workers, "workers")
    check_trials(how.trials_per_worker, "trials per worker")
    study = optuna.load_study(study_name=name, storage=url)
    done = _count(study)
    procs = []
    try:
        for i in range(how.n_workers):
            log = (how.log_dir / f"worker_{i}.log").open("w")
            cmd = command(url, name, how.trials_per_worker, i)
            env = _env(how.threads_per_worker)
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
            log.close()
        while any(p.poll() is None for p in procs):
            time.sleep(POLL_S)
            now = _count(study)
            yield from range(done, now)
            done = now
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
    yield from range(done, _count(study))
    _check_exits(procs, how.log_dir)


def _count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED + FAILED))


def _check_exits(procs: list[subprocess.Popen], log_dir: Path) -> None:
    for i, p in enumerate(procs):
        if p.returncode != 0:
            tail = (log_dir / f"worker_{i}.log").read_text(errors="replace")[-2000:]
            raise SweepError(f"worker {i} exited with status {p.returncode}:\n{tail}")
