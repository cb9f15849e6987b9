"""``sweep``: the hyper-parameter workflow, end to end.

An Optuna study over layer 3's Hydra pipeline (MNIST MLP on a subset by default): TPE samples
learning rate, weight decay, width, batch size and optimiser (torch's AdamW and SGD through
their configs, layer 5's Lion and Adafactor through ``configs/optim/scratch.yaml``); each trial
is a pipeline run whose intermediate validation losses feed a median pruner; the study lives in
SQLite (``<run>/study.db``) and two worker *processes* fill it at once, each knowing only the
database URL and the study's name. Then the best trial's full config is written
(``best_config.yaml``) and trained again with the one command printed in it, and the re-run's
value is compared with the trial's. Plots: optimisation history, fANOVA parameter importances,
parallel coordinates, the learning curves with the pruned trials visible, and the trials on a
timeline by worker.

Parallel workers finish in an order that depends on timing, so the set of trials (not the
pipeline run of any one of them) varies between two sweeps with the same seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from layer0_math.lab import RunContext, deliverable, pyplot
from layer5_training.tuning.best_config import rerun_command, write_best_config
from layer5_training.tuning.study import SweepError, SweepSpec, check_trials, create_study
from layer5_training.tuning.workers import Launch, launch

STUDY = "sweep"


@deliverable(
    quick={
        "experiment": "mnist_mlp",
        "data_source": "real",
        "n_train": 20000,
        "n_test": 5000,
        "max_steps": 400,
        "eval_every": 50,
        "space": {
            "lr": [1.0e-4, 0.3],
            "weight_decay": [1.0e-5, 0.1],
            "width": [32, 64, 128, 256],
            "batch_size": [32, 64, 128, 256],
            "optimizer": ["adamw", "sgd", "scratch:lion", "scratch:adafactor"],
        },
        "n_trials": 40,
        "n_workers": 2,
        "threads_per_worker": 1,
        "n_startup_trials": 8,
        "prune_startup_trials": 4,
        "prune_warmup_steps": 100,
    },
    full={"n_train": None, "n_test": None, "max_steps": 2000, "eval_every": 200, "n_trials": 100},
    headline=["best_value", "n_trials", "n_pruned", "rerun_value"],
)
def sweep(ctx: RunContext) -> dict[str, Any]:
    """Run the shared, pruned study; write, re-run and compare the best config; plot."""
    cfg = ctx.config
    n_trials, n_workers = check_trials(cfg["n_trials"]), check_trials(cfg["n_workers"], "workers")
    url = f"sqlite:///{ctx.out_dir / 'study.db'}"
    create_study(url, STUDY, _spec(ctx))
    how = Launch(
        n_workers=n_workers,
        trials_per_worker=-(-n_trials // n_workers),  # ceil: every trial is run
        threads_per_worker=cfg["threads_per_worker"],
        log_dir=ctx.out_dir,
    )
    for _ in ctx.progress(launch(url, STUDY, how), total=how.n_workers * how.trials_per_worker):
        pass
    study = optuna.load_study(study_name=STUDY, storage=url)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise SweepError(f"no trial of {url} completed: see {ctx.out_dir}/worker_*.log")
    best_path = write_best_config(study, ctx.out_dir)
    rerun = _rerun(ctx, best_path)
    ctx.write_json("trials.json", [_trial_record(t) for t in study.trials])
    plots = _plots(ctx, study)
    return {**_metrics(study, rerun, best_path, cfg["max_steps"]), "plots": plots}


def _spec(ctx: RunContext) -> SweepSpec:
    cfg = ctx.config
    base = [
        f"experiment={cfg['experiment']}",
        f"seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.n_train={_null(cfg['n_train'])}",
        f"data.n_test={_null(cfg['n_test'])}",
        f"trainer.max_steps={cfg['max_steps']}",
        f"trainer.eval_every={cfg['eval_every']}",
        f"trainer.log_every={cfg['eval_every']}",
        "trainer.progress=false",
        "logger=jsonl",
    ]
    if ctx.device is not None:
        base.append(f"device={ctx.device}")
    return SweepSpec(
        base=base,
        space=cfg["space"],
        trials_dir=str(ctx.out_dir),
        metric="loss",
        direction="minimize",
        seed=ctx.seed,
        parent_id=ctx.run_id,
        n_startup_trials=cfg["n_startup_trials"],
        prune_startup_trials=cfg["prune_startup_trials"],
        prune_warmup_steps=cfg["prune_warmup_steps"],
    )


def _null(value: Any) -> str:
    return "null" if value is None else str(value)


def _rerun(ctx: RunContext, best: Path) -> dict[str, Any]:
    """Train ``best_config.yaml`` again with its printed command, in a child process with the
    workers' thread count (so the arithmetic, hence the result, is the trial's)."""
    out = ctx.out_dir / "rerun"
    cmd = rerun_command(best, f"hydra.run.dir={out}", "trainer.progress=false")
    threads = str(ctx.config["threads_per_worker"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    env["DLSTACK_PARENT_RUN_ID"] = ctx.run_id
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    ctx.write_text("rerun.log", f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        raise SweepError(f"the re-run of {best} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads((out / "metrics.json").read_text())


def _trial_record(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": t.params,
        "worker": t.user_attrs.get("worker"),
        "run_dir": t.user_attrs.get("run_dir"),
        "test_accuracy": t.user_attrs.get("test_accuracy"),
        "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete
        else None,
    }


def _metrics(
    study: optuna.Study, rerun: dict[str, Any], best_path: Path, max_steps: int
) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    best = study.best_trial
    # steps not trained because a trial was stopped, as a share of training every trial fully
    saved = sum(max_steps - max(t.intermediate_values, default=0) for t in pruned)
    return {
        "best_value": study.best_value,
        "best_test_accuracy": best.user_attrs.get("test_accuracy"),
        "best_trial": best.number,
        "best_params": best.params,
        "n_trials": len(trials),
        "n_complete": states.count(TrialState.COMPLETE),
        "n_pruned": len(pruned),
        "n_failed": states.count(TrialState.FAIL),
        "n_workers_seen": len({t.user_attrs.get("worker") for t in trials}),
        "steps_saved_by_pruning": saved / (max_steps * len(trials)),
        "rerun_value": float(rerun["test_loss"]),
        "rerun_abs_diff": abs(float(rerun["test_loss"]) - study.best_value),
        "rerun_identical": int(float(rerun["test_loss"]) == study.best_value),
        "best_config": str(best_path),
        "rerun_command": " ".join(rerun_command(best_path)),
    }


# ----------------------------------------------------------------------------- plots


def _plots(ctx: RunContext, study: optuna.Study) -> list[str]:
    """The plots; returns their names (importances need two completed trials)."""
    from optuna.visualization import matplotlib as ovm

    pyplot()  # the Agg backend before optuna's plots import pyplot
    names = ["optimization_history", "parallel_coordinates", "intermediate_values"]
    # each title replaces optuna's (centred, but left-aligned on the importances)
    with warnings.catch_warnings():  # optuna's matplotlib plots are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = ovm.plot_optimization_history(study, target_name="test loss")
        ax.set_title("Optimisation history: test loss per trial, best so far")
        ctx.savefig(ax.figure, "optimization_history")
        ax = ovm.plot_parallel_coordinate(study, target_name="test loss")
        ax.set_title("Parallel coordinates: completed trials, coloured by test loss")
        ctx.savefig(ax.figure, "parallel_coordinates")
        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=ctx.seed)
            ax = ovm.plot_param_importances(study, evaluator=evaluator, target_name="test loss")
            ax.set_title(
                "Hyper-parameter importances (fANOVA over the completed trials)", loc="left"
            )
            ctx.savefig(ax.figure, "param_importances")
            names.append("param_importances")
    _plot_curves(ctx, study)
    if len(_finished(study)) > 0:
        _plot_timeline(ctx, study)
        names.append("worker_timeline")
    return names


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.datetime_complete]


def _plot_curves(ctx: RunContext, study: optuna.Study) -> None:
    """Every trial's validation loss against steps: completed solid, pruned dashed and ending
    in a cross where the pruner stopped it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for t in study.get_trials(deepcopy=False):
        if not t.intermediate_values:
            continue
        steps, values = zip(*sorted(t.intermediate_values.items()), strict=True)
        if t.state == TrialState.PRUNED:
            ax.plot(steps, values, "--", color="tab:red", alpha=0.6, lw=1)
            ax.plot(steps[-1], values[-1], "x", color="tab:red")
        else:
            ax.plot(steps, values, "-", color="tab:blue", alpha=0.8, lw=1.2)
    ax.plot([], [], "-", color="tab:blue", label="completed")
    ax.plot([], [], "--x", color="tab:red", label="pruned (x: stopped)")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (log scale)")
    ax.set_title("Intermediate values: the median pruner stops trials above the median curve")
    ax.legend()
    ctx.savefig(fig, "intermediate_values")


def _plot_timeline(ctx: RunContext, study: optuna.Study) -> None:
    """Each trial as a bar from its start to its end, one row per worker process."""
    plt = pyplot()
    trials = _finished(study)
    workers = sorted({t.user_attrs.get("worker", "?") for t in trials})
    t0 = min(t.datetime_start for t in trials)
    colours = {TrialState.COMPLETE: "tab:blue", TrialState.PRUNED: "tab:red"}
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.6 * len(workers)))
    for t in trials:
        start = (t.datetime_start - t0).total_seconds()
        length = (t.datetime_complete - t.datetime_start).total_seconds()
        row = workers.index(t.user_attrs.get("worker", "?"))
        ax.barh(row, length, left=start, color=colours.get(t.state, "tab:gray"), edgecolor="k")
        ax.text(start + length / 2, row, str(t.number), ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(workers)), workers)
    ax.set_xlabel("seconds since the first trial started")
    ax.set_ylabel("worker process")
    ax.set_title("Trials by worker (blue: completed, red: pruned, grey: failed); one shared study")
    ctx.savefig(fig, "worker_timeline")
