"""``gpt_tinystories``: a small GPT trained on the TinyStories sample through layer 3's pipeline,
scored in nats/token and bits per byte, with samples, and beside it on the same split and a
similar budget a count-based bigram and an LSTM language model of about the same size.

Every model sees the same tokens: the BPE is trained on the first 90% of the sample's characters
(:class:`~layer4_architectures.sequence.data.TokenText`), the last 10% is validation, and all three
are scored on the same validation targets. The GPT and the LSTM are sub-runs of the Hydra pipeline
(folders ``gpt/`` and ``lstm/``, each with its self-describing checkpoint); the samples come from
the GPT rebuilt by ``load_model`` from its checkpoint alone, its tokenizer from the checkpoint's
preprocessing. The quick preset runs on the 0.8 MB sample, the only TinyStories on these machines;
``full`` is CS336's configuration (``experiment=gpt_tinystories_cs336``), meant for one GPU and
the real dataset (``data_path``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.checkpoint import load_model
from layer3_framework.loggers import read_jsonl
from layer3_framework.train import compose, run
from layer4_architectures.sequence.baselines import BigramLM, choose_k, lstm_hidden_for
from layer4_architectures.sequence.data import TokenText, bits_per_byte, load_tokenizer
from layer4_architectures.sequence.flops import gpt_flops_per_token, mfu, peak_flops

PROMPTS = (
    "Once upon a time",
    "One day, a little girl named Lily",
    "Tom and his dog went to the park.",
    "The sun was shining and",
    "There was a big red ball",
)


@deliverable(
    quick={
        "experiment": "gpt_tinystories",
        "data_source": "real",
        "data_path": None,
        "vocab_size": 2048,
        "seq_len": 128,
        "batch_size": 16,
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 128,
        "dropout": 0.1,
        "lr": 2.0e-3,
        "steps": 900,
        "eval_every": 100,
        "eval_batches": None,
        "precision": "fp32",
        "compile": False,
        "lstm_embed_dim": 128,
        "lstm_lr": 5.0e-3,
        "lstm_steps": 900,
        "sample_tokens": 160,
        "temperature": 0.8,
        "top_k": 40,
    },
    full={
        "experiment": "gpt_tinystories_cs336",
        "vocab_size": 10000,
        "seq_len": 256,
        "batch_size": 32,
        "n_layer": 4,
        "n_head": 16,
        "n_embd": 512,
        "dropout": 0.0,
        "lr": 1.0e-3,
        "steps": 40000,
        "eval_every": 2000,
        "eval_batches": 200,
        "precision": "bf16",
        "compile": True,
        "lstm_embed_dim": 512,
        "lstm_lr": 2.0e-3,
        "lstm_steps": 10000,
        "sample_tokens": 250,
    },
    headline=["val_bpb", "lstm_val_bpb", "bigram_val_bpb", "val_loss", "tokens_per_second"],
)
def gpt_tinystories(ctx: RunContext) -> dict[str, Any]:
    """GPT, LSTM and bigram on the same TinyStories split; bpb, samples, loss curves."""
    cfg = ctx.config
    gpt = _sub_run(ctx, "gpt", _gpt_overrides(ctx))
    model = load_model(ctx.out_dir / "gpt")
    pre = model.dlstack_spec["preprocessing"]
    bpt = pre["bytes_per_token_val"]
    params = model.num_params()
    lstm_hidden = lstm_hidden_for(params, model.config.vocab_size, cfg["lstm_embed_dim"])
    lstm = _sub_run(ctx, "lstm", _lstm_overrides(ctx, lstm_hidden))
    bigram = _bigram(ctx)
    samples = _samples(ctx, model, load_tokenizer(pre))
    ctx.write_text("samples.txt", "\n\n---\n\n".join(samples) + "\n")
    tokens_per_s = gpt["samples_per_sec"] * cfg["seq_len"]
    peak, peak_source = peak_flops(ctx.device or "cpu")
    flops = gpt_flops_per_token(model, cfg["seq_len"])
    _plot_curves(ctx, bigram["val_loss"])
    metrics = {
        "val_bpb": bits_per_byte(gpt["test_loss"], bpt),
        "lstm_val_bpb": bits_per_byte(lstm["test_loss"], bpt),
        "bigram_val_bpb": bits_per_byte(bigram["val_loss"], bpt),
        "val_loss": gpt["test_loss"],
        "tokens_per_second": tokens_per_s,
        "perplexity": math.exp(gpt["test_loss"]),
        "lstm_val_loss": lstm["test_loss"],
        "bigram_val_loss": bigram["val_loss"],
        "bigram_k": bigram["k"],
        "bytes_per_token_val": bpt,
        "params": params,
        "lstm_params": sum(p.numel() for p in load_model(ctx.out_dir / "lstm").parameters()),
        "lstm_hidden_size": lstm_hidden,
        "train_seconds": gpt["train_seconds"],
        "lstm_train_seconds": lstm["train_seconds"],
        "flops_per_token": flops,
        "peak_flops": peak,
        "peak_flops_source": peak_source,
        "mfu": mfu(tokens_per_s, flops, peak),
        "steps": gpt["step"],
        "train_tokens": gpt["step"] * cfg["batch_size"] * cfg["seq_len"],
        "load_average_1min": os.getloadavg()[0],  # other work on the machine slows the clock
        "samples": samples,
    }
    metrics["ordering_met"] = int(
        metrics["val_bpb"] < metrics["lstm_val_bpb"] < metrics["bigram_val_bpb"]
    )
    return metrics


def _sub_run(ctx: RunContext, folder: str, overrides: list[str]) -> dict[str, Any]:
    cfg = compose(overrides)
    return run(cfg, ctx.out_dir / folder, device=ctx.device, parent_id=ctx.run_id)


def _data_overrides(ctx: RunContext) -> list[str]:
    """The one data setting every model here trains and is scored on."""
    cfg = ctx.config
    path = "null" if cfg["data_path"] is None else str(Path(cfg["data_path"]).expanduser())
    return [
        "data=tinystories_bpe",
        f"data.source={cfg['data_source']}",
        f"data.path={path}",
        f"data.vocab_size={cfg['vocab_size']}",
        f"data.seq_len={cfg['seq_len']}",
        f"data.batch_size={cfg['batch_size']}",
    ]


def _trainer_overrides(ctx: RunContext, steps: int) -> list[str]:
    cfg = ctx.config
    eval_batches = "null" if cfg["eval_batches"] is None else cfg["eval_batches"]
    return [
        f"seed={ctx.seed}",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={cfg['eval_every']}",
        f"trainer.eval_batches={eval_batches}",
        f"trainer.log_every={max(1, cfg['eval_every'] // 4)}",
        f"trainer.precision={cfg['precision']}",
        "trainer.clip_grad_norm=1.0",
        "logger=jsonl",
    ]


def _gpt_overrides(ctx: RunContext) -> list[str]:
    cfg = ctx.config
    return [
        f"experiment={cfg['experiment']}",
        *_data_overrides(ctx),
        *_trainer_overrides(ctx, cfg["steps"]),
        f"trainer.compile={str(cfg['compile']).lower()}",
        f"model.block_size={cfg['seq_len']}",
        f"model.n_layer={cfg['n_layer']}",
        f"model.n_head={cfg['n_head']}",
        f"model.n_embd={cfg['n_embd']}",
        f"model.dropout={cfg['dropout']}",
        f"optim.lr={cfg['lr']}",
    ]


def _lstm_overrides(ctx: RunContext, hidden: int) -> list[str]:
    cfg = ctx.config
    return [
        "model=charlm",
        "optim=adamw_gpt",
        *_data_overrides(ctx),
        *_trainer_overrides(ctx, cfg["lstm_steps"]),
        f"model.embed_dim={cfg['lstm_embed_dim']}",
        f"model.hidden_size={hidden}",
        f"optim.lr={cfg['lstm_lr']}",
    ]


def _bigram(ctx: RunContext) -> dict[str, Any]:
    """Add-k bigram: k chosen on held-out training text, scored on the eval windows' pairs."""
    cfg = ctx.config
    data = TokenText(
        name="tinystories",
        source=cfg["data_source"],
        path=cfg["data_path"],
        vocab_size=cfg["vocab_size"],
        seq_len=cfg["seq_len"],
    )
    test = data.setup(ctx.seed).test
    vocab = data.model_kwargs()["vocab_size"]
    train = np.asarray(data.streams["train"], dtype=np.int64)
    k, grid = choose_k(train, vocab)
    model = BigramLM.fit(train, vocab, k)
    # the eval windows tile val ids[0 : n·T + 1]: their (x_t, y_t) are that stream's pairs
    scored = test.ids[: len(test) * data.seq_len + 1].numpy()
    total, count = model.nll(scored[:-1], scored[1:])
    ctx.write_json("bigram.json", {"k": k, "heldout_nats_per_token_by_k": grid})
    return {"k": k, "val_loss": total / count}


def _samples(ctx: RunContext, model: torch.nn.Module, tok: Any) -> list[str]:
    cfg = ctx.config
    out = []
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tok.encode(prompt)], dtype=torch.long)
        room = model.config.block_size - ids.shape[1]
        gen = model.generate(
            ids,
            min(cfg["sample_tokens"], room),
            temperature=cfg["temperature"],
            top_k=cfg["top_k"],
            eos_id=tok.eot_id,
            seed=ctx.seed + i,
        )
        out.append(tok.decode(gen[0].tolist(), errors="replace"))
    return out


def loss_curves(run_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """(steps, values) of ``train/loss`` and ``eval/loss`` from a sub-run's metrics.jsonl."""
    records = read_jsonl(run_dir / "metrics.jsonl")
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for key in ("train/loss", "eval/loss"):
        rows = [(r["step"], r[key]) for r in records if key in r]
        curves[key] = ([s for s, _ in rows], [v for _, v in rows])
    return curves


def _plot_curves(ctx: RunContext, bigram_loss: float) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for folder, label, colour in (("gpt", "GPT", "C0"), ("lstm", "LSTM", "C1")):
        curves = loss_curves(ctx.out_dir / folder)
        ax.plot(*curves["train/loss"], color=colour, alpha=0.5, label=f"{label} train")
        ax.plot(*curves["eval/loss"], "o-", color=colour, label=f"{label} validation")
    ax.axhline(bigram_loss, color="C2", ls="--", label="bigram validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(f"TinyStories sample, BPE vocab {ctx.config['vocab_size']}")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "loss_curve.png")
