"""``moe_vs_dense`` and ``architecture_study`` on tiny configs (metrics, artifacts, a Switch
checkpoint that ``load_model`` rebuilds), and the study's parameter and FLOP counts against
independent counters (``sum(numel)`` of the built model, torch's FlopCounterMode), the width
solver and the power-law fit against a known law."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from layer0_math.lab import latest_run_dir, run_deliverable
from layer3_framework.checkpoint import load_model
from layer3_framework.ports import CifarCNN
from layer4_architectures.deliverables.architecture_study import (
    architecture_study,
    cnn_params,
    cnn_train_flops_per_image,
    fit_power_law,
    gpt_heads,
    gpt_params,
    gpt_train_flops_per_token,
    grid,
    power_law,
)
from layer4_architectures.deliverables.moe_vs_dense import moe_vs_dense, steps_to_reach
from layer4_architectures.routing.moe_gpt import MoEGPT
from layer4_architectures.sequence.gpt import GPT


def _training_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_cnn_params_and_flops_match_the_built_model(depth):
    w = 6
    model = CifarCNN(3, [w] * depth, 10, 32)
    assert cnn_params(depth, w) == sum(p.numel() for p in model.parameters())
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    assert _training_flops(model, x, y) == 2 * cnn_train_flops_per_image(depth, w)


@pytest.mark.parametrize(("depth", "d"), [(1, 16), (2, 40), (3, 48)])
def test_gpt_params_and_flops_match_the_built_model(depth, d):
    model = GPT(100, block_size=16, n_layer=depth, n_embd=d, n_head=gpt_heads(d))
    blocks = sum(p.numel() for p in model.blocks.parameters()) + model.norm_f.weight.numel()
    assert gpt_params(depth, d) == blocks
    for block in model.blocks:
        block.attn.need_weights = True  # explicit attention: matmuls the counter sees
    idx = torch.randint(0, 100, (2, 16))
    assert _training_flops(model, idx, idx) == gpt_train_flops_per_token(depth, d, 100, 16) * 32


def test_grid_widths_are_the_closest_to_each_budget():
    points = grid("cnn", [10000, 40000], [2, 4], batch=1, steps=1)
    for p in points:
        for other in (p.width - 2, p.width + 2):
            assert abs(p.params - p.budget) <= abs(cnn_params(p.depth, other) - p.budget)
    assert len(grid("gpt", [25000], [1, 2, 4], vocab=10, seq_len=8, batch=1, steps=1)) == 3
    with pytest.raises(ValueError, match="cnn depth 6"):
        grid("cnn", [1000], [6], batch=1, steps=1)
    with pytest.raises(ValueError, match="at least one budget"):
        grid("gpt", [], [1], vocab=10, seq_len=8, batch=1, steps=1)


def test_power_law_fit_recovers_a_known_law():
    n = np.geomspace(1e4, 1e6, 9)
    loss = power_law(n, 30.0, 0.35, 1.5) + np.random.default_rng(0).normal(0, 1e-3, 9)
    fit = fit_power_law(n, loss)
    assert fit["alpha"] == pytest.approx(0.35, abs=0.02)
    assert fit["c"] == pytest.approx(1.5, abs=0.05)
    assert 0.999 < fit["r2"] <= 1.0
    with pytest.raises(ValueError, match="at least 4 points"):
        fit_power_law(n[:3], loss[:3])


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


@pytest.mark.slow
def test_architecture_study_metrics_table_and_plots(tmp_path):
    tiny = {
        "data_source": "synthetic",
        "vocab_size": 300,
        "seq_len": 8,
        "gpt_budgets": [3000, 12000],
        "gpt_depths": [1, 2],
        "gpt_steps": 3,
        "gpt_batch_size": 4,
        "cnn_budgets": [2000],
        "cnn_depths": [2, 3],
        "cnn_batch_size": 8,
        "cnn_steps": 2,
        "cnn_n_test": 16,
    }
    m = run_deliverable(architecture_study, overrides=tiny, runs_dir=tmp_path)
    assert m["n_models"] == 6
    assert math.isfinite(m["power_law_alpha"]) and m["power_law_fit_r2"] <= 1.0
    run = latest_run_dir("layer4_architectures", "architecture_study", runs_dir=tmp_path)
    rows = json.loads((run / "grid.json").read_text())
    assert {(r["family"], r["depth"]) for r in rows} >= {("gpt", 1), ("gpt", 2), ("cnn", 3)}
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert (run / "table.md").read_text().count("\n") == 2 + 6
    for name in ("loss_vs_params.png", "loss_vs_flops.png", "depth_vs_width.png"):
        assert (run / name).stat().st_size > 0
