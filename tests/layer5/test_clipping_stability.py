"""``clipping_stability`` on a tiny config (synthetic MNIST-shaped images, a 6-layer plain MLP):
the edge is found where the probe says, an absurd rate diverges unclipped and a tiny global-norm
threshold keeps it finite (‖Δθ‖ ≤ η·c per step), the norms recorded are the *pre*-clip ones
(above the threshold they were clipped to), spikes recomputed from the recorded losses match
the summary, and the artifacts exist. find_edge's rule and errors on hand-made probes."""

import json
import math

import numpy as np
import pytest

from layer0_math.lab import run_deliverable
from layer5_training.deliverables.clipping_stability import clipping_stability, find_edge
from layer5_training.stability import count_spikes

TINY = {
    "data_source": "synthetic",
    "n_train": 256,
    "n_test": 128,
    "batch_size": 32,
    "depth": 6,
    "width": 16,
    "momentum": 0.0,
    "probe_lrs": [1e-3, 1e3, 1e4],
    "probe_steps": 10,
    "n_past": 1,
    "steps": 16,
    "seeds": 2,
    "clips": [["none", None], ["norm", 1e-5], ["value", 1e-7]],
    "spike_window": 4,
    "steps_per_column": 4,
}


@pytest.mark.slow
def test_clipping_stability_tiny(tmp_path):
    m = run_deliverable(clipping_stability, overrides=TINY, runs_dir=tmp_path)
    assert m["edge_lr"] == 1e-3 and m["study_lrs"] == [1e-3, 1e3]
    assert m["divergence_rate_unclipped"] == 1.0  # lr 1e3 without clipping: every seed
    # with ‖g‖ clipped to 1e-5 a step moves the weights by at most 1e3 · 1e-5 = 0.01
    assert m["divergence_rate_norm_1e-05"] == 0.0
    assert m["best_clip"] == "norm_1e-05" and m["divergence_rate_clipped"] == 0.0
    assert math.isfinite(m["final_test_loss_norm_1e-05"])
    run = next(tmp_path.rglob("runs.json")).parent
    for name in ("grad_norm_heatmaps.png", "divergence.png", "loss_curves.png", "probe.json"):
        assert (run / name).stat().st_size > 0, name
    assert "stable up to lr 0.001" in (run / "conclusion.md").read_text()
    runs = json.loads((run / "runs.json").read_text())
    assert len(runs) == 2 * 3 * 2  # rates x clipping settings x seeds
    clipped = [r for r in runs if r["spec"]["clip"] == "norm" and r["spec"]["lr"] == 1e3]
    for r in clipped:
        assert len(r["grad_norms"]) == r["steps_done"] == 16
        assert min(r["grad_norms"]) > 1e-5  # pre-clip norms, not the clipped 1e-5
    summary = json.loads((run / "summary.json").read_text())
    cell = summary["table"]["none"]["per_lr"]["0.001"]
    edge_runs = [r for r in runs if r["spec"]["clip"] == "none" and r["spec"]["lr"] == 1e-3]
    spikes = [count_spikes(r["train_loss"], 2.0, 4) for r in edge_runs]
    assert cell["spikes_per_run"] == pytest.approx(np.mean(spikes))
    assert cell["runs"] == 2


def test_find_edge_is_the_rate_below_the_first_divergence():
    assert find_edge([0.01, 0.1, 1.0, 10.0], [False, False, True, True], 2) == (
        0.1,
        [0.1, 1.0, 10.0],
    )
    assert find_edge([0.01, 0.1, 1.0], [False, True, False], 5) == (0.01, [0.01, 0.1, 1.0])
    with pytest.raises(ValueError, match="no probed learning rate diverged"):
        find_edge([0.01, 0.1], [False, False], 1)
    with pytest.raises(ValueError, match="smallest probed learning rate 0.01 diverged"):
        find_edge([0.01, 0.1], [True, True], 1)
    with pytest.raises(ValueError, match="increasing"):
        find_edge([0.1, 0.01], [False, True], 1)


def test_clipping_stability_rejects_a_config_without_the_unclipped_baseline(tmp_path):
    with pytest.raises(ValueError, match="expected \\['none', null\\]"):
        run_deliverable(
            clipping_stability, overrides={**TINY, "clips": [["norm", 1.0]]}, runs_dir=tmp_path
        )
