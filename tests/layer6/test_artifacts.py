"""Layer 4's runs as serving sources: the newest ok run, its sub-run, and the error naming
`make layer4` when there is none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layer0_math.lab import MissingArtifactError
from layer6_serving.artifacts import SOURCES, source_checkpoint


def _run(runs: Path, deliverable: str, stamp: str, status: str, folders: tuple[str, ...]) -> Path:
    run = runs / "layer4_architectures" / deliverable / stamp
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"status": status}))
    for f in folders:
        (run / f / "checkpoints").mkdir(parents=True)
    return run


@pytest.mark.parametrize("kind", list(SOURCES))
def test_missing_layer4_run_names_the_command(tmp_path, kind):
    with pytest.raises(MissingArtifactError) as e:
        source_checkpoint(kind, tmp_path)
    msg = str(e.value)
    assert "make layer4" in msg and SOURCES[kind].deliverable in msg


def test_the_newest_ok_run_is_used_and_failed_ones_skipped(tmp_path):
    old = _run(tmp_path, "gpt_tinystories", "20260101-000000-000000", "ok", ("gpt",))
    _run(tmp_path, "gpt_tinystories", "20260102-000000-000000", "failed", ("gpt",))
    assert source_checkpoint("generator", tmp_path) == old / "gpt"
    new = _run(tmp_path, "gpt_tinystories", "20260103-000000-000000", "ok", ("gpt", "lstm"))
    assert source_checkpoint("generator", tmp_path) == new / "gpt"


def test_folder_names_match_layer4(tmp_path):
    ddpm = _run(tmp_path, "ddpm_mnist", "20260101-000000-000000", "ok", ("train",))
    assert source_checkpoint("denoiser", tmp_path) == ddpm / "train"
    assert SOURCES["denoiser"].weights == "ema"
    cifar = _run(tmp_path, "cifar_vision", "20260101-000000-000000", "ok", ("resnet18",))
    assert source_checkpoint("classifier", tmp_path) == cifar / "resnet18"  # the full preset's
    cifar2 = _run(tmp_path, "cifar_vision", "20260102-000000-000000", "ok", ("resnet20",))
    assert source_checkpoint("classifier", tmp_path) == cifar2 / "resnet20"


def test_an_ok_run_without_the_sub_run_names_it(tmp_path):
    _run(tmp_path, "cifar_vision", "20260101-000000-000000", "ok", ("airbench_cifar",))
    with pytest.raises(MissingArtifactError, match=r"resnet20/checkpoints.*make layer4"):
        source_checkpoint("classifier", tmp_path)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown model kind 'vae'"):
        source_checkpoint("vae")
