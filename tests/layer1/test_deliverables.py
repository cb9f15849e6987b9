"""The layer-1 deliverables, run with small configs: targets and artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from layer0_math.lab import read_arrays, run_deliverable
from layer1_autograd import deliverables
from layer1_autograd.manual_mlp import ManualMLP


@pytest.mark.slow
def test_scalar_engine_separates_two_moons(tmp_path):
    metrics = run_deliverable(deliverables.scalar_engine, overrides={"grid": 8}, runs_dir=tmp_path)
    assert metrics["accuracy"] >= 0.97, metrics
    assert list(tmp_path.rglob("decision_boundary.png"))


@pytest.mark.data
@pytest.mark.slow
def test_manual_backprop_mlp_on_an_mnist_subset(tmp_path):
    overrides = {"hidden": 64, "epochs": 5, "n_train": 4000, "n_val": 1000, "n_test": 0}
    metrics = run_deliverable(
        deliverables.mlp_manual_backprop, overrides=overrides, runs_dir=tmp_path
    )
    assert metrics["grad_max_abs_diff"] < 1e-10, metrics
    assert metrics["test_accuracy"] > 0.9, metrics  # 4k examples, 5 epochs
    (model_file,) = tmp_path.rglob("model.safetensors")
    arrays, meta = read_arrays(model_file)
    model = ManualMLP(arrays)
    assert meta["sizes"] == [784, 64, 64, 10] and model.sizes == (784, 64, 64, 10)
    assert list(tmp_path.rglob("curves.png"))


def test_gradient_flow_shows_vanishing_and_exploding(tmp_path):
    overrides = {
        "depth": 8,
        "width": 32,
        "steps": 3,
        "landscape_steps": 30,
        "landscape_points": 5,
        "landscape_grid": 3,
    }
    m = run_deliverable(deliverables.gradient_flow, overrides=overrides, runs_dir=tmp_path)
    assert m["ratio_sigmoid_small"] < 1e-6  # vanishing: layer 1 sees almost nothing
    # Exploding: N(0, 1) weights scale every ReLU layer's signal by ~√(width/2) = 4 relative to
    # He init, so gradients grow by ~4^(depth−1) ≈ 1.6e4; ask for three orders of magnitude.
    assert m["grad_norm_first_relu_naive"] > 1e3 * m["grad_norm_first_relu_he"]
    assert 0.1 < m["ratio_relu_he"] < 10  # He init keeps ReLU gradients level
    assert np.isfinite(m["landscape_center_loss"])
    assert m["landscape_loss_at_unit_step"] > m["landscape_center_loss"]
    names = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert {"graph.dot", "graph.png", "grad_norms_by_layer.png", "loss_landscape.png"} <= names
