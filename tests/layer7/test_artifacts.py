"""Layer 4's runs as layer 7's base models: the newest ok run's sub-run, rebuilt by layer 3's
``load_model``; a missing run names `make layer4`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from layer0_math.lab import MissingArtifactError
from layer3_framework.checkpoint import checkpoint_path, save_checkpoint
from layer7_research.artifacts import SOURCES, load_base, preprocessing, source_dir


def _run(runs: Path, deliverable: str, stamp: str, status: str, folder: str) -> Path:
    run = runs / "layer4_architectures" / deliverable / stamp
    (run / folder / "checkpoints").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"status": status}))
    return run / folder


@pytest.mark.parametrize("name", list(SOURCES))
def test_a_missing_base_model_names_make_layer4(tmp_path, name):
    with pytest.raises(MissingArtifactError) as e:
        source_dir(name, tmp_path)
    assert "make layer4" in str(e.value) and SOURCES[name].deliverable in str(e.value)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown base model 'gpt2'.*'gpt'"):
        source_dir("gpt2")


def test_newest_ok_run_wins_and_failed_runs_are_skipped(tmp_path):
    old = _run(tmp_path, "bert_mlm", "20260101-000000-000000", "ok", "train")
    _run(tmp_path, "bert_mlm", "20260102-000000-000000", "failed", "train")
    assert source_dir("bert", tmp_path) == old
    full = _run(tmp_path, "cifar_vision", "20260101-000000-000000", "ok", "resnet18")
    assert source_dir("resnet", tmp_path) == full  # the full preset's model, when it is the newest


def test_load_base_rebuilds_the_saved_model_with_its_preprocessing(tmp_path):
    folder = _run(tmp_path, "gpt_tinystories", "20260101-000000-000000", "ok", "gpt")
    model = torch.nn.Linear(3, 2)
    spec = {
        "target": "torch.nn.Linear",
        "kwargs": {"in_features": 3, "out_features": 2},
        "preprocessing": {"tokenizer_kind": "char"},
    }
    save_checkpoint(
        checkpoint_path(folder / "checkpoints", 1), model=model, step=1, model_spec=spec
    )
    loaded = load_base("gpt", runs_dir=tmp_path)
    assert torch.equal(loaded.weight, model.weight) and not loaded.training
    assert preprocessing(loaded) == {"tokenizer_kind": "char"}
