"""The ``ddpm_mnist`` deliverable on a tiny config: its metrics, its artifacts in the names the
comparison reads, and a checkpoint that alone reproduces the saved samples."""

import json
import math

import numpy as np
import pytest
import torch

from layer0_math.lab import latest_run_dir, run_deliverable
from layer4_architectures.deliverables.ddpm_mnist import ddpm_mnist
from layer4_architectures.deliverables.feature_classifier import feature_classifier
from layer4_architectures.generative.diffusion import Diffusion, to_unit

N = 20
TINY_CLASSIFIER = {
    "epochs": 1,
    "widths": [8, 16],
    "data_source": "synthetic",
    "n_train": 256,
    "n_test": 64,
}
TINY = {
    "timesteps": 30,
    "base_channels": 8,
    "steps": 3,
    "batch_size": 16,
    "n_samples": N,
    "ddim_steps": [30, 10],
    "chunk_size": 8,
    "data_source": "synthetic",
    "n_train": 32,
}


@pytest.mark.slow
@pytest.mark.data
def test_ddpm_mnist_metrics_artifacts_and_reproducible_samples():
    run_deliverable(feature_classifier, overrides=TINY_CLASSIFIER)
    m = run_deliverable(ddpm_mnist, overrides=TINY)
    for key in ("fid", "kid", "fid_floor", "kid_floor", "ddim30_fid", "ddim10_fid"):
        assert math.isfinite(m[key]) and (m[key] >= 0 or key.startswith("kid"))
    for key in ("confident_share", "class_entropy", "ddim10_confident_share"):
        assert 0.0 <= m[key] <= 1.0
    assert m["n_samples"] == N and m["timesteps"] == 30 and m["train_steps"] == 3
    assert {f"sample_seconds_per_1000_{k}" for k in ("ddpm", "ddim30", "ddim10")} <= set(m)
    assert m["train_seconds"] > 0 and m["parameters"] > 0
    run = latest_run_dir("layer4_architectures", "ddpm_mnist")
    for name in ("sample_grid.png", "denoising_strip.png", "loss_by_timestep.png"):
        assert (run / name).stat().st_size > 1000
    labels = np.load(run / "labels.npy")
    assert labels.tolist() == [i % 10 for i in range(N)]
    for name in ("ddpm", "ddim30", "ddim10"):
        x = np.load(run / f"samples_{name}.npy")
        assert x.shape == (N, 1, 28, 28) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
    scores = json.loads((run / "scores.json").read_text())
    assert scores["scores"]["ddpm"]["fid"] == pytest.approx(m["fid"])
    # the checkpoint alone (EMA weights, schedule from its spec) redraws the saved samples
    d = Diffusion.from_checkpoint(run / "train", schedule="linear", timesteps=30)
    again, _ = d.sample(N, sampler="ddim", steps=10, classes=torch.as_tensor(labels), chunk_size=8)
    np.testing.assert_array_equal(to_unit(again).numpy(), np.load(run / "samples_ddim10.npy"))
