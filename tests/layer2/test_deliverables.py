"""The deliverables: artifacts flow cnn_cifar10 -> visualize, targets on small budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layer0_math.datasets import CharVocab, load_tiny_shakespeare
from layer0_math.lab import MissingArtifactError, run_deliverable, spec_of
from layer2_primitives import ReversalAttention, deliverables
from layer2_primitives.deliverables.char_rnn import CharConfig
from layer2_primitives.deliverables.cnn_cifar10 import CnnConfig
from layer2_primitives.deliverables.visualize import VisualizeConfig
from layer2_primitives.reversal import attention_diagonal_mass, train_reversal


def test_visualize_without_cnn_artifact_says_what_to_run(tmp_path):
    with pytest.raises(MissingArtifactError, match="make layer2"):
        run_deliverable(deliverables.visualize, runs_dir=tmp_path)


def test_attention_diagonal_mass_closed_forms():
    t = 6
    anti = np.zeros((2, 1, t, t))
    anti[..., np.arange(t), t - 1 - np.arange(t)] = 1.0
    assert attention_diagonal_mass(anti) == pytest.approx(1.0)
    assert attention_diagonal_mass(np.full((2, 3, t, t), 1.0 / t)) == pytest.approx(1.0 / t)
    with pytest.raises(ValueError, match="square"):
        attention_diagonal_mass(np.zeros((2, 1, 3, 4)))


@pytest.mark.slow
def test_reversal_attention_learns_the_anti_diagonal():
    """The visualize target: attention_diagonal_mass >= 0.5 (uniform attention gives 1/T)."""
    cfg, rng = VisualizeConfig(), np.random.default_rng(0)
    model = ReversalAttention(cfg.attn_vocab, cfg.attn_seq_len, cfg.attn_embed, rng=rng)
    result = train_reversal(
        model, rng, vocab=cfg.attn_vocab, steps=cfg.attn_steps, batch=cfg.attn_batch, lr=cfg.attn_lr
    )
    assert attention_diagonal_mass(result.weights) >= 0.5
    assert result.accuracy > 0.9 and len(result.history.losses) == cfg.attn_steps


@pytest.mark.slow
@pytest.mark.data
def test_cnn_then_visualize_small(tmp_path):
    """A small CNN beats chance clearly on the full test set; visualize loads its weights."""
    small = {"widths": [8, 16, 16], "train_subset": 3072, "epochs": 2, "eval_every": 20,
             "eval_subset": 500, "lr": 0.02}  # fmt: skip
    metrics = run_deliverable(deliverables.cnn_cifar10, overrides=small, runs_dir=tmp_path)
    assert metrics["test_accuracy"] > 0.25, metrics  # chance is 0.10
    run = next((tmp_path / "layer2_primitives" / "cnn_cifar10").glob("[0-9]*"))
    for name in ("curves.png", "confusion_matrix.png", "model.safetensors"):
        assert (run / name).exists(), name
    meta = json.loads((run / "model.safetensors.json").read_text())
    assert meta["widths"] == [8, 16, 16]
    vis = run_deliverable(deliverables.visualize, overrides={"attn_steps": 300}, runs_dir=tmp_path)
    assert 0 <= vis["attention_diagonal_mass"] <= 1
    vis_run = next((tmp_path / "layer2_primitives" / "visualize").glob("[0-9]*"))
    for name in ("filters.png", "feature_maps.png", "attention.png"):
        assert (vis_run / name).exists(), name


@pytest.mark.slow
@pytest.mark.data
def test_char_rnn_beats_the_unigram_model(tmp_path):
    """A briefly trained LSTM predicts better than character frequencies alone can."""
    small = {"lstm_steps": 80, "other_steps": 10, "hidden_size": 64, "embed_dim": 16,
             "eval_every": 40, "eval_chars": 4000, "sample_chars": 50}  # fmt: skip
    metrics = run_deliverable(deliverables.char_rnn, overrides=small, runs_dir=tmp_path)
    text = load_tiny_shakespeare()
    ids = CharVocab.from_text(text).encode(text)
    split = int(0.9 * len(ids))
    freq = np.bincount(ids[:split], minlength=ids.max() + 1) / split
    unigram = float(-np.mean(np.log(freq[ids[split:]] + 1e-12)))  # ~3.3 nats/char
    assert metrics["val_loss"] < unigram - 0.3, (metrics["val_loss"], unigram)
    run = next((tmp_path / "layer2_primitives" / "char_rnn").glob("[0-9]*"))
    assert "=== LSTM" in (run / "samples.txt").read_text()
    assert (run / "model.safetensors").exists() and (run / "loss_curves.png").exists()


@pytest.mark.parametrize(
    "fn, config",
    [
        (deliverables.cnn_cifar10, CnnConfig),
        (deliverables.char_rnn, CharConfig),
        (deliverables.visualize, VisualizeConfig),
    ],
)
def test_presets_are_valid_configs(fn, config):
    """Both presets of every deliverable build its config dataclass (no unknown or missing keys)."""
    for preset in ("quick", "full"):
        cfg = config(**spec_of(fn).presets[preset])
        assert cfg.blas_threads >= 1
