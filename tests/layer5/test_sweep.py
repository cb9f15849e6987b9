"""The ``sweep`` deliverable on a tiny synthetic config: two worker processes fill one SQLite
study (read here with ``sqlite3``, not Optuna: the trials and their distinct workers), the best
trial's config re-run with its printed command gives the trial's value exactly, and the metrics,
trial records and plots are what the study holds."""

from __future__ import annotations

import json
import sqlite3

import pytest

from layer0_math.lab import run_deliverable
from layer5_training.deliverables.sweep import sweep
from layer5_training.tuning.study import SweepError

TINY = {
    "data_source": "synthetic",
    "n_train": 64,
    "n_test": 32,
    "max_steps": 6,
    "eval_every": 2,
    "n_trials": 2,
    "n_startup_trials": 2,
    "prune_startup_trials": 8,  # both trials complete: the importances need two
    "space": {"lr": [1e-3, 0.1], "width": [8, 16], "batch_size": [16, 32]},
}


def _db_trials(path):
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT t.number, t.state, v.value, a.value_json FROM trials t "
            "JOIN trial_values v ON v.trial_id = t.trial_id "
            "JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'worker'"
        ).fetchall()
    return {n: {"state": s, "value": v, "worker": json.loads(w)} for n, s, v, w in rows}


@pytest.mark.slow
def test_two_workers_share_one_study_and_the_best_config_reruns_exactly(tmp_path):
    m = run_deliverable(sweep, overrides=TINY, runs_dir=tmp_path, device="cpu")
    run = next((tmp_path / "layer5_training" / "sweep").glob("2*"))
    trials = _db_trials(run / "study.db")
    assert sorted(trials) == [0, 1] and {t["state"] for t in trials.values()} == {"COMPLETE"}
    workers = {t["worker"] for t in trials.values()}
    assert len(workers) == 2 and {w.split("@")[0] for w in workers} == {"0", "1"}
    assert m["n_trials"] == 2 and m["n_workers_seen"] == 2 and m["n_pruned"] == 0
    assert m["best_value"] == min(t["value"] for t in trials.values())
    assert m["best_trial"] == min(trials, key=lambda n: trials[n]["value"])
    # the re-run (a child process running the printed command) is bit-for-bit the trial
    assert m["rerun_identical"] == 1 and m["rerun_value"] == m["best_value"]
    rerun = json.loads((run / "rerun" / "manifest.json").read_text())
    assert (
        rerun["status"] == "ok"
        and rerun["parent_id"] == json.loads((run / "manifest.json").read_text())["run_id"]
    )
    assert "--config-name best_config" in m["rerun_command"]
    assert f"optim.lr={m['best_params']['lr']!r}" in (run / "best_config.yaml").read_text()
    for n in trials:  # each trial is a pipeline run of its own, a child of the sweep
        trial = json.loads((run / f"trial_{n:03d}" / "manifest.json").read_text())
        assert trial["status"] == "ok" and trial["parent_id"] == rerun["parent_id"]
    records = json.loads((run / "trials.json").read_text())
    assert [r["value"] for r in records] == [trials[n]["value"] for n in sorted(trials)]
    for name in (
        "optimization_history",
        "param_importances",
        "parallel_coordinates",
        "intermediate_values",
        "worker_timeline",
    ):
        assert (run / f"{name}.png").stat().st_size > 10_000, name


def test_zero_trials_or_workers_are_clear_errors(tmp_path):
    with pytest.raises(SweepError, match="trials=0: expected a whole number >= 1"):
        run_deliverable(sweep, overrides={**TINY, "n_trials": 0}, runs_dir=tmp_path)
    with pytest.raises(SweepError, match="workers=0: expected a whole number >= 1"):
        run_deliverable(sweep, overrides={**TINY, "n_workers": 0}, runs_dir=tmp_path)
