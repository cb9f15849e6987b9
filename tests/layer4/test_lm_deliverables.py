"""The language-model deliverables on tiny synthetic settings (keys, artifacts, sub-runs, sane
values), and CS336's full TinyStories configuration built and trained for two steps, its
checkpoint then rebuilt and sampled with no dataset on disk."""

import json
import math

import pytest
import torch

from layer0_math.lab import run_deliverable
from layer3_framework.checkpoint import load_model
from layer3_framework.ports import CharLM
from layer3_framework.train import compose, run
from layer4_architectures.deliverables import gpt_shakespeare_char, gpt_tinystories
from layer4_architectures.sequence.data import load_tokenizer
from layer4_architectures.sequence.gpt import GPT


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


TINY_STORIES = {
    "data_source": "synthetic",
    "vocab_size": 300,
    "seq_len": 40,
    "batch_size": 4,
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 32,
    "steps": 4,
    "lstm_steps": 4,
    "eval_every": 2,
    "lstm_embed_dim": 16,
    "sample_tokens": 8,
}


def _parents(run_dir, subs):
    return {d: json.loads((run_dir / d / "manifest.json").read_text())["parent_id"] for d in subs}


@pytest.mark.slow
def test_gpt_tinystories_reports_bpb_for_all_three_models(tmp_path):
    m = run_deliverable(gpt_tinystories, overrides=TINY_STORIES, runs_dir=tmp_path)
    for key in ("val_bpb", "lstm_val_bpb", "bigram_val_bpb", "val_loss", "tokens_per_second"):
        assert math.isfinite(m[key]) and m[key] > 0, key
    assert m["val_bpb"] == pytest.approx(
        m["val_loss"] / (m["bytes_per_token_val"] * math.log(2)), rel=1e-12
    )
    assert m["perplexity"] == pytest.approx(math.exp(m["val_loss"]))
    assert abs(m["lstm_params"] - m["params"]) / m["params"] < 0.05  # about the same size
    assert 0 < m["mfu"] < 1 and m["train_tokens"] == 4 * 4 * 40
    assert len(m["samples"]) == 5 and all(s.startswith(p) for s, p in zip(m["samples"], (
        "Once upon a time", "One day", "Tom", "The sun", "There was"), strict=True))  # fmt: skip
    run_dir = next(tmp_path.rglob("samples.txt")).parent
    for name in ("loss_curve.png", "bigram.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    run_id = json.loads((run_dir / "manifest.json").read_text())["run_id"]
    assert _parents(run_dir, ("gpt", "lstm")) == {"gpt": run_id, "lstm": run_id}
    assert isinstance(load_model(run_dir / "gpt"), GPT)
    assert isinstance(load_model(run_dir / "lstm"), CharLM)


@pytest.mark.slow
def test_gpt_shakespeare_char_reports_val_and_seconds(tmp_path):
    tiny = {"data_source": "synthetic", "steps": 4, "eval_every": 2, "block_size": 16,
            "n_layer": 1, "n_head": 2, "n_embd": 32, "sample_chars": 20}  # fmt: skip
    m = run_deliverable(gpt_shakespeare_char, overrides=tiny, runs_dir=tmp_path)
    assert math.isfinite(m["val_loss"]) and 0 < m["train_seconds"] < 60
    assert m["val_target_met"] == int(m["val_loss"] <= 1.88) and m["arch"] == "ours"
    assert len(m["sample"]) >= 20
    run_dir = next(tmp_path.rglob("sample.txt")).parent
    assert (run_dir / "loss_curve.png").is_file()
    model = load_model(run_dir / "gpt")
    assert model.config.pos == "rope" and model.config.block_size == 16


def test_gpt_shakespeare_char_refuses_an_unknown_architecture(tmp_path):
    with pytest.raises(ValueError, match="unknown arch 'gpt5'"):
        run_deliverable(gpt_shakespeare_char, overrides={"arch": "gpt5"}, runs_dir=tmp_path)


@pytest.mark.slow
def test_the_cs336_configuration_trains_and_loads_with_no_dataset(tmp_path, monkeypatch):
    cfg = compose(
        [
            "experiment=gpt_tinystories_cs336",
            "data.source=synthetic",
            "data.batch_size=2",
            "data.eval_batch_size=2",
            "data.n_test=2",
            "data.progress=false",
            "trainer.max_steps=2",
            "optim.total_steps=40000",  # the full schedule, two steps of it
            "trainer.log_every=1",
            "trainer.progress=false",
            "logger=jsonl",
        ]
    )
    metrics = run(cfg, tmp_path / "cs336")
    assert metrics["step"] == 2 and math.isfinite(metrics["test_loss"])
    # nothing on disk but the run folder: no dataset, no tokenizer cache
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("DLSTACK_DATA", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty))
    monkeypatch.setenv("DLSTACK_OFFLINE", "1")
    model = load_model(tmp_path / "cs336")
    c = model.config
    assert (c.n_embd, c.n_layer, c.n_head, c.d_ff, c.block_size) == (512, 4, 16, 1344, 256)
    assert (c.mlp, c.pos, c.norm) == ("swiglu", "rope", "rmsnorm")
    tok = load_tokenizer(model.dlstack_spec["preprocessing"])
    assert tok.vocab_size == c.vocab_size
    prompt = torch.tensor([tok.encode("once upon a time")])
    out = model.generate(prompt, 5, seed=0)
    assert out.shape == (1, prompt.shape[1] + 5)
    assert tok.decode(out[0].tolist(), errors="replace").startswith("once upon a time")
