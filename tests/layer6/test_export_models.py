"""The export_models deliverable: the make-layer4 message without layer 4's runs, and (real
data) the whole pipeline over tiny models planted as layer 4's runs."""

from __future__ import annotations

import json
import shutil

import pytest

from layer0_math.lab import MissingArtifactError, run_deliverable
from layer6_serving.deliverables import export_models
from layer6_serving.registry import ModelRegistry

TINY = {"n_real": 4, "n_test": 60, "n_val_windows": 2, "threads": 1}


def test_missing_layer4_runs_name_make_layer4(tmp_path, monkeypatch):
    monkeypatch.setenv("DLSTACK_RUNS", str(tmp_path / "runs"))
    with pytest.raises(MissingArtifactError, match=r"make layer4.*gpt_tinystories"):
        run_deliverable(export_models, overrides={**TINY, "registry": str(tmp_path / "reg")})
    assert not (tmp_path / "reg").exists()


def _plant(runs, tiny_checkpoints) -> None:
    """The tiny checkpoints where layer 4's deliverables put theirs."""
    for deliverable, sub, kind in (
        ("gpt_tinystories", "gpt", "generator"),
        ("ddpm_mnist", "train", "denoiser"),
        ("cifar_vision", "resnet20", "classifier"),
    ):
        run = runs / "layer4_architectures" / deliverable / "20260101-000000-000000"
        shutil.copytree(tiny_checkpoints[kind], run / sub)
        (run / "manifest.json").write_text(json.dumps({"status": "ok", "run_id": "r1"}))


@pytest.mark.slow
@pytest.mark.data
def test_export_models_end_to_end_on_tiny_models(tmp_path, monkeypatch, tiny_checkpoints):
    monkeypatch.setenv("DLSTACK_RUNS", str(tmp_path / "runs"))
    _plant(tmp_path / "runs", tiny_checkpoints)
    reg_dir = tmp_path / "reg"
    m = run_deliverable(export_models, overrides={**TINY, "registry": str(reg_dir)})
    assert 0 < m["max_abs_diff"] <= 1e-4
    assert m["gpt_onnx_greedy_match"] and m["gpt_torchscript_greedy_match"]
    registry = ModelRegistry(reg_dir)
    assert registry.names() == ["ddpm", "gpt", "resnet"]
    assert registry.manifest("resnet")["reference"]["kind"]  # H4's drift reference stored
    assert registry.manifest("gpt")["reference"]["n"] > 0
    assert registry.manifest("ddpm")["source"]["weights"] == "ema"
    # eager and ONNX fp32 classify the same images the same way (parity ≤ 1e-4 on logits)
    assert abs(m["resnet_accuracy_eager"] - m["resnet_accuracy_onnx"]) <= 1 / 60
    assert 0 < m["int8_size_ratio"] < 1 and 0 < m["gpt_int8_size_ratio"] < 1
    assert m["int8_accuracy_change"] == m["resnet_accuracy_int8"] - m["resnet_accuracy_onnx"]
    assert m["gpt_val_loss_fp32"] > 0 and abs(m["int8_val_loss_change"]) < 0.5
    table = next((tmp_path / "runs" / "layer6_serving" / "export_models").glob("2*/table.md"))
    assert "| gpt v1 | onnx | step |" in table.read_text()
