"""``architecture_study``: its parameter and FLOP counts against independent counters
(``sum(numel)`` of the built model, torch's FlopCounterMode), the width solver, the equal-steps
and equal-FLOPs step counts (every shape of a family at the same FLOP budget within one step's
rounding), the power-law fit against a known law, and the deliverable on a tiny config."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from layer0_math.lab import latest_run_dir, run_deliverable
from layer4_architectures.deliverables.architecture_study import (
    MIN_STEPS,
    architecture_study,
    equal_flops,
    equal_steps,
    fit_power_law,
    gpt_heads,
    gpt_params,
    gpt_train_flops_per_token,
    grid,
    power_law,
    resnet_model,
    resnet_params,
    resnet_train_flops_per_image,
)
from layer4_architectures.sequence.gpt import GPT


def _training_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize(("depth", "w"), [(1, 6), (2, 4), (3, 16), (5, 3)])
def test_resnet_params_and_flops_match_the_built_model(depth, w):
    model = resnet_model(depth, w)
    assert resnet_params(depth, w) == sum(p.numel() for p in model.parameters())
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    assert _training_flops(model, x, y) == 2 * resnet_train_flops_per_image(depth, w)


def test_resnet20_is_the_papers_size():
    assert resnet_params(3, 16) == 269_722  # He et al. 2015, table 6: 0.27M


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
    points = grid("resnet", [10000, 40000], [1, 3], batch=1)
    for p in points:
        for other in (p.width - 1, p.width + 1):
            assert abs(p.params - p.budget) <= abs(resnet_params(p.depth, other) - p.budget)
    gpt = grid("gpt", [25000], [1, 2, 4], vocab=10, seq_len=8, batch=2)
    assert len(gpt) == 3
    assert gpt[0].flops_per_step == gpt_train_flops_per_token(1, gpt[0].width, 10, 8) * 2 * 8
    with pytest.raises(ValueError, match="resnet depth 0"):
        grid("resnet", [1000], [0, 1], batch=1)
    with pytest.raises(ValueError, match="at least one budget"):
        grid("gpt", [], [1], vocab=10, seq_len=8, batch=1)
    with pytest.raises(ValueError, match="family='cnn'"):
        grid("cnn", [1000], [1], batch=1)


def test_equal_flops_gives_every_shape_the_same_budget_within_one_step():
    points = grid("gpt", [25000, 100000, 400000], [1, 2, 4], vocab=2048, seq_len=64, batch=16)
    budget = 4.0e11
    runs = equal_flops(points, budget)
    assert {p.variant for p in runs} == {"flops"}
    for p in runs:
        assert p.train_flops == p.flops_per_step * p.steps
        assert abs(p.train_flops - budget) <= p.flops_per_step / 2  # round(F / per step)
    steps = [p.steps for p in runs]
    assert max(steps) > 5 * min(steps)  # the small models take many more steps
    same = equal_steps(points, 250)
    assert {p.steps for p in same} == {250} and {p.variant for p in same} == {"steps"}
    assert [p.train_flops for p in same] == [250 * p.flops_per_step for p in points]
    assert all(p.steps == 0 for p in points)  # the plan is copied, not changed in place
    with pytest.raises(ValueError, match=f"need >= {MIN_STEPS}"):
        equal_flops(points, 1e9)
    with pytest.raises(ValueError, match="steps=0"):
        equal_steps(points, 0)


def test_power_law_fit_recovers_a_known_law():
    n = np.geomspace(1e4, 1e6, 9)
    loss = power_law(n, 30.0, 0.35, 1.5) + np.random.default_rng(0).normal(0, 1e-3, 9)
    fit = fit_power_law(n, loss)
    assert fit["alpha"] == pytest.approx(0.35, abs=0.02)
    assert fit["c"] == pytest.approx(1.5, abs=0.05)
    assert 0.999 < fit["r2"] <= 1.0
    with pytest.raises(ValueError, match="at least 4 points"):
        fit_power_law(n[:3], loss[:3])


TINY = {
    "data_source": "synthetic",
    "vocab_size": 300,
    "seq_len": 8,
    "gpt_budgets": [3000, 6000],
    "gpt_depths": [1, 2],
    "gpt_steps": 3,
    "gpt_train_flops": 2.8e7,
    "gpt_batch_size": 4,
    "resnet_budgets": [2000],
    "resnet_depths": [1, 2],
    "resnet_batch_size": 4,
    "resnet_steps": 2,
    "resnet_train_flops": 1.2e8,
    "resnet_n_test": 16,
}


@pytest.mark.slow
def test_architecture_study_both_variants_tables_and_plots(tmp_path):
    m = run_deliverable(architecture_study, overrides=TINY, runs_dir=tmp_path)
    assert m["n_models"] == 2 * (4 + 2)
    for suffix in ("", "_equal_flops"):
        assert m[f"power_law_fit_r2{suffix}"] <= 1.0 or math.isnan(m[f"power_law_fit_r2{suffix}"])
        assert set(m[f"resnet_best_depth_per_budget{suffix}"]) == {"2000"}
        assert m[f"gpt_best{suffix}"]["depth"] in (1, 2)
    assert math.isfinite(m["power_law_alpha"])
    run = latest_run_dir("layer4_architectures", "architecture_study", runs_dir=tmp_path)
    rows = json.loads((run / "grid.json").read_text())
    assert all(math.isfinite(r["loss"]) for r in rows)
    for family, steps in (("gpt", 3), ("resnet", 2)):
        same = [r for r in rows if r["family"] == family and r["variant"] == "steps"]
        flops = [r for r in rows if r["family"] == family and r["variant"] == "flops"]
        assert len(same) == len(flops) > 0 and {r["steps"] for r in same} == {steps}
        budget = TINY[f"{family}_train_flops"]
        for r in flops:
            assert r["steps"] >= MIN_STEPS
            assert abs(r["train_flops"] - budget) <= r["flops_per_step"] / 2
        assert (run / f"{family}_flops_b{flops[0]['budget']}_d{flops[0]['depth']}").is_dir()
    text = (run / "table.md").read_text()
    assert "## equal steps" in text and "## equal FLOPs" in text
    assert text.count("| gpt |") == 8 and text.count("| resnet |") == 4
    for name in ("loss_vs_params.png", "loss_vs_flops.png", "depth_vs_width.png"):
        assert (run / name).stat().st_size > 0
