"""The generative deliverables on tiny configs (synthetic training data; the yardstick scores
against the real MNIST test set): feature_classifier, then vae_mnist and gan_mnist, then
generative_comparison over them and a stand-in ddpm_mnist run. Metrics keys, artifacts, sane
values, and the errors for a missing run and too few samples."""

import json
import math

import numpy as np
import pytest

from layer0_math.lab import MissingArtifactError, latest_run_dir, open_run, run_deliverable
from layer4_architectures import deliverables
from layer4_architectures.deliverables.generative_comparison import load_samples

pytestmark = [pytest.mark.data, pytest.mark.slow]

N = 100
TINY = {
    "feature_classifier": {"data_source": "synthetic", "n_train": 256, "n_test": 128, "epochs": 1},
    "vae_mnist": {
        "data_source": "synthetic",
        "n_train": 256,
        "epochs": 1,
        "epochs_2d": 1,
        "iwae_n": 100,
        "n_samples": N,
    },
    "gan_mnist": {
        "data_source": "synthetic",
        "n_train": 256,
        "steps": 4,
        "strong_d_run_steps": 4,
        "strong_d_steps": 2,
        "grids": 2,
        "n_samples": N,
    },
}


def _fake_ddpm_run(runs):
    """A finished ddpm_mnist run folder with the artifacts the comparison reads."""
    with open_run(
        "layer4_architectures", "ddpm_mnist", preset="quick", seed=0, config={}, runs_dir=runs
    ) as ctx:
        rng = np.random.default_rng(0)
        for name in ("ddpm", "ddim50", "ddim10"):
            np.save(ctx.path(f"samples_{name}.npy"), rng.random((N, 1, 28, 28), dtype=np.float32))
        seconds = {f"sample_seconds_per_1000_{k}": 1.0 for k in ("ddpm", "ddim50", "ddim10")}
        ctx.record_metrics({"parameters": 10, "train_seconds": 2.0, **seconds})


def test_generative_deliverables_run_and_compare(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(MissingArtifactError, match="make layer4"):
        run_deliverable(deliverables.vae_mnist, overrides=TINY["vae_mnist"], runs_dir=runs)
    fc = run_deliverable(
        deliverables.feature_classifier, overrides=TINY["feature_classifier"], runs_dir=runs
    )
    assert 0 <= fc["feature_classifier_accuracy"] <= 1
    vae = run_deliverable(deliverables.vae_mnist, overrides=TINY["vae_mnist"], runs_dir=runs)
    gan = run_deliverable(deliverables.gan_mnist, overrides=TINY["gan_mnist"], runs_dir=runs)
    for m in (vae, gan):
        assert m["feature_classifier_accuracy"] == fc["feature_classifier_accuracy"]
        assert m["fid"] > 0 and m["fid_floor"] > 0 and 0 <= m["class_entropy"] <= 1
        assert 0 <= m["confident_share"] <= 1 and m["n_samples"] == N
    assert vae["iwae_nll"] > 0 and math.isfinite(vae["test_neg_elbo"])
    assert vae["test_neg_elbo"] == pytest.approx(vae["test_recon"] + vae["test_kl"])
    vae_run = latest_run_dir("layer4_architectures", "vae_mnist", runs)  # not the failed first
    gan_run = latest_run_dir("layer4_architectures", "gan_mnist", runs)
    for png in ("samples", "training_curves", "interpolations", "latent_map_2d", "reconstructions"):
        assert (vae_run / f"{png}.png").stat().st_size > 0
    for png in ("samples", "samples_over_training", "loss_curves", "class_histograms"):
        assert (gan_run / f"{png}.png").stat().st_size > 0
    assert np.load(vae_run / "samples_vae.npy").shape == (N, 1, 28, 28)
    manifest = json.loads((gan_run / "strong_d" / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["kind"] == "train"
    assert list((gan_run / "gan" / "checkpoints").glob("step_*.safetensors"))

    with pytest.raises(MissingArtifactError, match="ddpm_mnist"):
        run_deliverable(deliverables.generative_comparison, overrides={"n": N}, runs_dir=runs)
    _fake_ddpm_run(runs)
    cmp = run_deliverable(deliverables.generative_comparison, overrides={"n": N}, runs_dir=runs)
    assert cmp["vae_fid"] == pytest.approx(vae["fid"])  # same yardstick, same n, same images
    assert {"ddpm_fid", "ddim50_kid", "ddim10_class_entropy", "fid_floor"} <= set(cmp)
    run = latest_run_dir("layer4_architectures", "generative_comparison", runs)
    table = (run / "comparison.md").read_text()
    assert "| DDIM-10 |" in table and "floor" in table and "biased" in table
    assert (run / "comparison_grids.png").stat().st_size > 0
    with pytest.raises(ValueError, match="holds 100 samples but the comparison needs n=101"):
        load_samples(vae_run / "samples_vae.npy", N + 1)
