"""The ``lora_finetune`` deliverable: the make-layer4 error without a base, its parts (methods,
validation windows, bytes per token, table), and one end-to-end run on a tiny fake base GPT
whose zero-shot loss is recomputed by hand."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layer0_math.datasets import load
from layer0_math.lab import MissingArtifactError, resolve_config, run_deliverable
from layer3_framework.checkpoint import load_model, save_checkpoint
from layer3_framework.data import CharDataset
from layer4_architectures.sequence.bpe import BPETokenizer, train_val_split
from layer4_architectures.sequence.gpt import GPT

lf = importlib.import_module("layer7_research.deliverables.lora_finetune")

TINY = {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0}


def test_missing_base_model_names_make_layer4():
    with pytest.raises(MissingArtifactError, match="make layer4"):
        run_deliverable(lf.lora_finetune, overrides={"steps": 2})


def test_methods_cover_full_ranks_mlp_and_adapter():
    quick = [m.name for m in lf.methods(resolve_config(lf.lora_finetune, "quick"))]
    assert quick == ["full_ft", *(f"lora_r{r}" for r in (1, 2, 4, 8, 16)), "adapter"]
    full = lf.methods(resolve_config(lf.lora_finetune, "full"))
    mlp = [m for m in full if m.name.startswith("lora_mlp_")]
    assert [m.r for m in mlp] == [1, 2, 4, 8, 16]
    assert all(set(m.targets) == {*lf.ATTN, *lf.MLP} for m in mlp)
    assert all(m.targets == tuple(lf.ATTN) for m in full if m.name.startswith("lora_r"))


def test_val_subset_and_bytes_per_token():
    ids = np.arange(100) % 7
    val = lf._val_subset(CharDataset(ids, 8), 3)
    assert len(val) == 3
    assert torch.equal(val[2][1], torch.from_numpy(ids[17:25]))
    token_bytes = np.array([1, 2, 3, 1, 1, 4, 2])
    data = lf.StyleData(train=None, val=val, token_bytes=token_bytes, train_tokens=0, val_tokens=0)
    targets = ids[1:25]  # every target the three windows predict
    assert data.bytes_per_token() == pytest.approx(token_bytes[targets].mean())
    assert lf._val_subset(CharDataset(ids, 8), None) is not None
    with pytest.raises(ValueError, match="n_val_windows"):
        lf._val_subset(CharDataset(ids, 8), 0)


def fake_base(runs: Path) -> tuple[GPT, BPETokenizer]:
    """A tiny random GPT saved where layer 4's gpt_tinystories run would put it."""
    tok = BPETokenizer.train(str(load("tiny_shakespeare"))[:5000], 300)
    torch.manual_seed(0)
    kwargs = {"vocab_size": tok.vocab_size, **TINY}
    model = GPT(**kwargs)
    pre = {"kind": "text", "seq_len": 16, "tokenizer_kind": "bpe", "tokenizer": tok.to_dict()}
    run = runs / "layer4_architectures" / "gpt_tinystories" / "20260101-000000-000000"
    spec = {
        "target": "layer4_architectures.sequence.gpt.GPT",
        "kwargs": kwargs,
        "preprocessing": pre,
    }
    save_checkpoint(
        run / "gpt" / "checkpoints" / "step_00000001.safetensors",
        model=model,
        step=1,
        model_spec=spec,
    )
    (run / "manifest.json").write_text(json.dumps({"status": "ok"}))
    return model.eval(), tok


@pytest.mark.data
@pytest.mark.slow
def test_end_to_end_on_a_tiny_fake_base(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("DLSTACK_RUNS", str(runs))
    base, tok = fake_base(runs)
    over = {"steps": 2, "ranks": [1], "batch_size": 2, "eval_every": 1, "n_val_windows": 3}
    metrics = run_deliverable(lf.lora_finetune, overrides={**over, "sample_tokens": 4})
    # the zero-shot loss by hand: plain cross-entropy over the first 3 validation windows
    val_ids = tok.encode(train_val_split(str(load("tiny_shakespeare")), 0.1)[1])
    ids = torch.tensor(val_ids[: 3 * 16 + 1])
    with torch.no_grad():
        logits = base(ids[:-1].view(3, 16))
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[1:]).item()
    assert metrics["base_val_loss"] == pytest.approx(want, abs=1e-5)
    # LoRA r = 1 on qkv (32 -> 96) and out_proj (32 -> 32) of two blocks: 1·(128 + 64)·2
    assert metrics["lora_r1_trainable"] == 384
    n = sum(p.numel() for p in base.parameters())
    assert metrics["full_ft_trainable"] == n
    assert 8 * n <= metrics["full_ft_optimizer_state_bytes"] < 8 * n + 1024  # Adam: m and v
    assert metrics["lora_r1_optimizer_state_bytes"] < 8 * 384 + 1024
    assert metrics["merged_reload_max_abs_diff"] <= 1e-6
    run = sorted((runs / "layer7_research" / "lora_finetune").glob("2*"))[-1]
    for name in ("table.md", "val_loss_vs_params.png", "loss_curves.png", "samples.txt"):
        assert (run / name).is_file(), name
    merged = load_model(run / "lora_merged")
    assert type(merged) is GPT
    assert (run / "table.md").read_text().count("\n") == 2 + 4  # zero-shot, full, r=1, adapter
