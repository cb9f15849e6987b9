"""``regularization_ablation`` on a tiny synthetic config: every row present, the gaps are the
recorded train metric minus the test one, an LR of 1e3 does not train while 0.1 with BatchNorm
does (on easy class-prototype images), the training images it measures are un-augmented, and
bad configs are clear errors."""

import json
import math

import pytest
import torch

from layer0_math.lab import run_deliverable
from layer3_framework.train import check_config, compose
from layer5_training.deliverables.regularization_ablation import (
    ROWS,
    _train_set,
    lr_range,
    regularization_ablation,
)

TINY = {
    "data_source": "synthetic",
    "n_train": 128,
    "n_test": 64,
    "train_eval": 64,
    "batch_size": 32,
    "eval_batch_size": 64,
    "widths": [4, 8],
    "hidden": 16,
    "precision": "fp32",
    "steps": 6,
    "lr_steps": 8,
    "lrs": [0.1, 1000.0],
    "norms": ["batch", "none"],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    metrics = run_deliverable(regularization_ablation, overrides=TINY, runs_dir=runs)
    run = next(runs.rglob("table.json")).parent
    return metrics, run


@pytest.mark.slow
def test_every_row_is_present_and_its_gaps_are_train_minus_test(tiny_run):
    metrics, run = tiny_run
    rows = json.loads((run / "table.json").read_text())
    assert [r["name"] for r in rows] == list(ROWS)
    for r in rows:
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
        assert r["gap"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"], abs=1e-12)
        assert r["loss_gap"] == pytest.approx(r["test_loss"] - r["train_loss"], abs=1e-12)
        assert metrics[f"gap_{r['name']}"] == r["gap"]
        assert metrics[f"test_accuracy_{r['name']}"] == r["test_accuracy"]
        assert r["steps"] == TINY["steps"]
    by = {r["name"]: r for r in rows}
    assert by["all"]["augment"] and by["all"]["dropout"] > 0 and by["all"]["weight_decay"] > 0
    assert not by["baseline"]["augment"] and by["baseline"]["label_smoothing"] == 0
    for name in ("table.md", "gaps.png", "lr_range.png", "lr_grid.json"):
        assert (run / name).stat().st_size > 0


@pytest.mark.slow
def test_an_lr_of_1e3_does_not_train_and_0_1_with_batchnorm_does(tiny_run):
    metrics, run = tiny_run
    grid = json.loads((run / "lr_grid.json").read_text())
    assert grid["threshold"] == pytest.approx(0.8 * math.log(10))
    point = {(p["norm"], p["lr"]): p for p in grid["points"]}
    assert len(point) == 4
    for norm in TINY["norms"]:
        assert point[(norm, 1000.0)]["trains"] is False
    assert point[("batch", 0.1)]["trains"] is True
    assert point[("batch", 0.1)]["final_train_loss"] < grid["threshold"]
    assert metrics["lr_range_batch"] == [0.1, 0.1] and metrics["lr_count_batch"] == 1
    assert metrics["lr_count_none"] == len(
        [p for p in grid["points"] if p["norm"] == "none" and p["trains"]]
    )


def test_lr_range_is_the_span_of_the_lrs_that_train():
    pts = [{"lr": lr, "trains": t} for lr, t in [(0.01, False), (0.1, True), (1.0, True)]]
    assert lr_range(pts) == {"range": [0.1, 1.0], "count": 2}
    assert lr_range([{"lr": 3.0, "trains": False}]) == {"range": None, "count": 0}


def test_train_metrics_see_un_augmented_images():
    data = check_config(compose(["data=cifar10", "data.source=synthetic", "data.n_train=16"])).data
    plain, augmented = _train_set(data, False, 0, 8), _train_set(data, True, 0, 8)
    assert len(plain) == 8
    first = torch.stack([plain[i][0] for i in range(8)])
    plain.set_epoch(3)
    assert torch.equal(first, torch.stack([plain[i][0] for i in range(8)]))
    augmented.set_epoch(3)
    assert not torch.equal(first, torch.stack([augmented[i][0] for i in range(8)]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"norms": ["batch", "group"]}, "'group'"),
        ({"lrs": [0.1, -1.0]}, "-1.0"),
        ({"lrs": [1.0, 0.1]}, "increasing"),
        ({"lr_threshold": 1.5}, "lr_threshold=1.5"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        run_deliverable(regularization_ablation, overrides={**TINY, **override}, runs_dir=tmp_path)
