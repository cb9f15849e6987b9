"""``moe_vs_dense`` on a tiny config (metrics, artifacts, a Switch checkpoint that
``load_model`` rebuilds) and its ``steps_to_reach``; ``architecture_study``'s tests are in
``test_architecture_study.py``."""

import json
import math

import numpy as np
import pytest

from layer0_math.lab import run_deliverable
from layer3_framework.checkpoint import load_model
from layer4_architectures.deliverables.moe_vs_dense import moe_vs_dense, steps_to_reach
from layer4_architectures.routing.moe_gpt import MoEGPT


def test_steps_to_reach_is_the_first_step_at_or_below_the_target():
    curve = [[10, 3.0], [20, 2.5], [30, 2.4]]
    assert steps_to_reach(curve, 2.5) == 20
    assert steps_to_reach(curve, 2.0) is None


TINY_MOE = {
    "data_source": "synthetic",
    "vocab_size": 300,
    "seq_len": 16,
    "batch_size": 8,
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 16,
    "steps": 8,
    "eval_every": 4,
}


@pytest.mark.slow
def test_moe_vs_dense_metrics_artifacts_and_checkpoint(tmp_path):
    m = run_deliverable(moe_vs_dense, overrides=TINY_MOE, runs_dir=tmp_path)
    for key in ("dense_val_loss", "switch_val_loss"):
        assert math.isfinite(m[key]) and 0 < m[key] < 2 * math.log(300)
    assert 0.0 <= m["dropped_fraction"] < 1.0 and 0.0 <= m["val_dropped_fraction"] < 1.0
    assert m["switch_params"] > m["dense_params"]
    assert m["switch_active_params"] == m["dense_params"] + 2 * 4 * 16  # + the routers
    assert m["steps"] == 8 and [s for s, _ in m["switch_eval_curve"]] == [4, 8]
    assert 0.0 <= m["final_expert_share_min"] <= 0.25 <= m["final_expert_share_max"] <= 1.0
    run = next(tmp_path.rglob("utilisation.json")).parent
    for name in ("val_loss.png", "expert_utilisation.png"):
        assert (run / name).stat().st_size > 0
    share = np.array(json.loads((run / "utilisation.json").read_text())["share"])
    np.testing.assert_allclose(share.sum(-1), 1.0, atol=1e-5)  # (W, L, E): shares sum to 1
    model = load_model(run / "switch")
    assert isinstance(model, MoEGPT) and model.num_params() == m["switch_params"]
