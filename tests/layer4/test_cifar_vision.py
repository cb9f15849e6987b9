"""The CIFAR recipe's task options (label smoothing against its formula, flip test-time
augmentation against the mean of the two views) and the ``cifar_vision`` deliverable under a
tiny equal budget on synthetic data: steps set by the probed step time, metrics, table, figures;
bad configurations refused by name."""

import json
from pathlib import Path

import pytest
import torch

from layer0_math.lab import run_deliverable
from layer3_framework.task import Classification
from layer4_architectures.deliverables.cifar_vision import MIN_STEPS, cifar_vision
from layer4_architectures.vision.resnet import cifar_resnet


def test_label_smoothing_is_the_cross_entropy_with_the_smoothed_target():
    torch.manual_seed(0)
    model = cifar_resnet(1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 9, 3])
    loss, _ = Classification(model, label_smoothing=0.1).training_step((x, y), 0)
    logp = torch.log_softmax(model(x), -1)
    target = torch.full_like(logp, 0.1 / 10)
    target[torch.arange(4), y] += 0.9
    torch.testing.assert_close(loss, -(target * logp).sum(-1).mean())
    plain, _ = Classification(model).training_step((x, y), 0)
    torch.testing.assert_close(plain, -logp[torch.arange(4), y].mean())
    with pytest.raises(ValueError, match="label_smoothing"):
        Classification(model, label_smoothing=1.0)


def test_flip_tta_scores_the_mean_of_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = cifar_resnet(1).eval()
    x, y = torch.randn(5, 3, 32, 32), torch.randint(0, 10, (5,))
    sums = Classification(model, flip_tta=True).validation_step((x, y))
    with torch.no_grad():
        logits = (model(x) + model(x.flip(-1))) / 2
    want = torch.nn.functional.cross_entropy(logits.double(), y, reduction="sum")
    torch.testing.assert_close(sums["loss"][0], want, rtol=1e-5, atol=1e-5)
    assert int(sums["accuracy"][0]) == int((logits.argmax(-1) == y).sum())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ["vgg"]}, "unknown model 'vgg'"),
        ({"budget_seconds": 0.0}, "budget_seconds=0.0"),
        ({"gradcam_model": "airbench_cifar"}, "gradcam_model='airbench_cifar'"),
        ({"warmup_steps": 2, "probe_steps": 3}, "warmup_steps \\+ probe_steps = 5"),
        ({"precisions": ["fp16"]}, "precisions=\\['fp16'\\]"),
    ],
)
def test_bad_configs_are_refused_by_name(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run_deliverable(cifar_vision, overrides=overrides, runs_dir=tmp_path)


@pytest.mark.slow
def test_deliverable_under_one_tiny_budget_on_synthetic_data(tmp_path):
    tiny = {
        "data_source": "synthetic", "n_train": 64, "n_test": 16, "batch_size": 16,
        "airbench_batch_size": 32, "eval_batch_size": 16, "budget_seconds": 0.3,
        "warmup_steps": 2, "probe_steps": 6, "gradcam_images": 3, "airbench_widths": [8, 16, 16],
        "models": ["airbench_cifar", "resnet20"],
    }  # fmt: skip
    m = run_deliverable(cifar_vision, overrides=tiny, runs_dir=tmp_path)
    assert 0 <= m["test_accuracy"] <= 1 and m["train_seconds"] > 0
    assert m["resnet20_params"] == 269_722 and 80 < m["resnet20_mflops"] < 83
    assert m["test_accuracy"] == max(m["airbench_cifar_test_accuracy"], m["resnet20_test_accuracy"])
    run = Path(next(tmp_path.rglob("table.json")).parent)
    rows = json.loads((run / "table.json").read_text())
    for r in rows:  # the budget sets the steps: ⌊budget / probed step time⌋, at least 8
        assert r["precision"] == min(r["probe_seconds"], key=r["probe_seconds"].get)
        assert r["step_seconds"] == r["probe_seconds"][r["precision"]]
        assert r["steps"] == max(MIN_STEPS, int(0.3 / r["step_seconds"]))
        assert r["epochs"] == pytest.approx(r["steps"] * r["batch_size"] / 64)
        assert 0 < r["timed_seconds"] and r["train_seconds"] > 0
    assert [r["batch_size"] for r in rows] == [32, 16]
    assert rows[0]["params"] == m["airbench_cifar_params"]
    assert "| ResNet-20 | 269,722 |" in (run / "table.md").read_text()
    assert (run / "probe" / "airbench_cifar-fp32" / "manifest.json").exists()
    for png in ("gradcam.png", "accuracy_vs_size.png"):
        assert (run / png).stat().st_size > 10_000
    assert 0 <= m["gradcam_mean_peak_in_centre"] <= 1
