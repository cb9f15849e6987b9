"""``optimizer_benchmark`` on a tiny config (synthetic text, 2 optimisers × 2 rates × 1 seed):
the metrics and artifacts exist, a rate of 1e3 for SGD is recorded as diverged (not crashed, not
chosen), the best optimiser named is the one with the lowest recorded validation loss, and the
optimiser-state memory matches its closed form (SGD-momentum one fp32 buffer per weight, Adam
two). The benchmark runner's bad input is a clear error."""

import json
import math

import pytest

from layer0_math.lab import run_deliverable
from layer5_training.benchmarking import RunSpec
from layer5_training.deliverables.optimizer_benchmark import grid, optimizer_benchmark

TINY = {
    "data_source": "synthetic",
    "seq_len": 16,
    "batch_size": 4,
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 16,
    "steps": 12,
    "warmup_steps": 2,
    "eval_every": 6,
    "eval_windows": 8,
    "seeds": 1,
    "optimizers": ["sgd", "adam"],
    "lrs": {"sgd": [0.1, 1.0e3], "adam": [1.0e-3, 1.0e-2]},
}


@pytest.mark.slow
def test_optimizer_benchmark_tiny(tmp_path):
    m = run_deliverable(optimizer_benchmark, overrides=TINY, runs_dir=tmp_path)
    run = next(tmp_path.rglob("runs.json")).parent
    for name in ("table.md", "curves.png", "lr_sensitivity.png", "summary.json"):
        assert (run / name).stat().st_size > 0, name
    runs = json.loads((run / "runs.json").read_text())
    assert m["runs"] == len(runs) == 4
    wild = next(r for r in runs if r["spec"]["optimizer"] == "sgd" and r["spec"]["lr"] == 1e3)
    assert wild["diverged"] and wild["stop_reason"] and math.isnan(wild["final_val"])
    assert m["runs_diverged"] >= 1 and m["sgd_best_lr"] == 0.1  # the diverged rate is not best
    # the best optimiser: the lowest final val loss in the recorded runs (1 seed: mean = value)
    finals = {
        name: min(
            r["final_val"] for r in runs if r["spec"]["optimizer"] == name and not r["diverged"]
        )
        for name in ("sgd", "adam")
    }
    assert m["best_optimizer"] == min(finals, key=finals.get)
    for name, value in finals.items():
        assert m[f"{name}_best_val"] == pytest.approx(value)
        assert 0 < value < 2 * math.log(200)  # a finite cross-entropy near or below uniform
    assert m["sgd_state_bytes_per_param"] == 4.0  # one fp32 momentum buffer per weight
    assert m["adam_state_bytes_per_param"] == pytest.approx(8.0, rel=1e-3)  # m and v (+ steps)
    finished = next(r for r in runs if not r["diverged"])
    assert finished["val_steps"] == [6, 12] and finished["steps_done"] == 12
    assert len(finished["grad_norms"]) == 12  # one pre-clip norm per step


def test_grid_rejects_unknown_names_and_missing_rates():
    cfg = {**TINY, "hyper": {}, "divergence_factor": 2.0}
    with pytest.raises(ValueError, match="unknown \\['adamax'\\]"):
        grid({**cfg, "optimizers": ["sgd", "adamax"]})
    with pytest.raises(ValueError, match="no learning rates for \\['adam'\\]"):
        grid({**cfg, "lrs": {"sgd": [0.1]}})
    specs = grid(cfg)
    assert [(s.optimizer, s.lr) for s in specs] == [
        ("sgd", 0.1),
        ("sgd", 1e3),
        ("adam", 1e-3),
        ("adam", 1e-2),
    ]


def test_run_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="lr must be > 0, got -0.1"):
        RunSpec("sgd", lr=-0.1)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        RunSpec("sgd", lr=0.1, steps=0)
