"""``attention_study``: what attention and positions buy, measured on two synthetic tasks.

(a) **Positional encodings and length generalisation.** The same small GPT with ``pos`` =
none / sinusoidal / learned / RoPE is trained on the lag-copy task (``y_t = x_{t-k}``,
:func:`~layer4_architectures.sequence.tasks.lag_copy_batch`) at length 64 and evaluated at 64 and
at 128 (block_size 128, so every encoding can run there). Accuracy at 128 is also given on the
positions 64..127 alone, the ones never seen in training. The task needs *relative* position,
which RoPE expresses directly (``q_t·k_s`` depends on ``t - s``); learned positions have no
trained rows beyond 63; sinusoidal ones are defined everywhere but the model's use of them is
fitted to positions < 64; no encoding at all leaves only what the causal mask reveals.

(b) **The induction head.** A 2-layer GPT trained on repeated random tokens (a per-row period,
:func:`~layer4_architectures.sequence.tasks.repeat_batch`), probed on sequences of ``T/2`` random
tokens then the same ``T/2`` again; each head's induction score (mean attention from ``t`` in the
repeat to the position after the previous occurrence of ``x_t``) and
previous-token score are measured; ``induction_score`` is the best head's, against the chance
value of uniform causal attention. The best induction head's attention map and layer 0's best
previous-token head's are plotted on one sequence.

Both trainings run on layer 3's :class:`~layer3_framework.trainer.Trainer` (AdamW with
:func:`~layer4_architectures.sequence.gpt.decay_groups`, warm-up + cosine, clipping).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.data import build_loader
from layer3_framework.device import resolve_device
from layer3_framework.schedules import warmup_cosine
from layer3_framework.trainer import Trainer, TrainerConfig
from layer4_architectures.sequence.gpt import GPT, decay_groups
from layer4_architectures.sequence.tasks import (
    IGNORE,
    induction_scores,
    lag_copy_batch,
    previous_token_scores,
    repeat_batch,
    uniform_induction_chance,
)

ENCODINGS = ("none", "sinusoidal", "learned", "rope")


@deliverable(
    quick={
        "encodings": list(ENCODINGS),
        "lag": 4,
        "lag_vocab": 16,
        "train_len": 64,
        "eval_len": 128,
        "lag_steps": 1000,
        "lag_n_layer": 2,
        "lag_n_head": 4,
        "lag_n_embd": 64,
        "lag_lr": 3e-3,
        "induction_vocab": 32,
        "induction_len": 32,
        "induction_min_period": 5,
        "induction_max_period": 16,
        "induction_steps": 600,
        "induction_n_layer": 2,
        "induction_n_head": 4,
        "induction_n_embd": 64,
        "induction_pos": "learned",
        "induction_lr": 3e-3,
        "batch_size": 32,
        "eval_batch_size": 128,
        "eval_batches": 4,
    },
    full={"lag_steps": 3000, "induction_steps": 4000, "eval_batches": 16},
    headline=[
        "induction_score",
        "accuracy_128_none",
        "accuracy_128_sinusoidal",
        "accuracy_128_learned",
        "accuracy_128_rope",
    ],
)
def attention_study(ctx: RunContext) -> dict[str, Any]:
    """Positional encodings on lag-copy (train 64, test 128); the induction head, found."""
    cfg = ctx.config
    unknown = sorted(set(cfg["encodings"]) - set(ENCODINGS))
    if unknown:
        raise ValueError(f"unknown encodings {unknown}; expected some of {list(ENCODINGS)}")
    metrics: dict[str, Any] = {}
    table = [_positional_run(ctx, enc) for enc in ctx.progress(cfg["encodings"], desc="pos")]
    ctx.write_json("positional_table.json", table)
    _plot_positional(ctx, table)
    for row in table:
        for key in ("accuracy_64", "accuracy_128", "accuracy_unseen"):
            metrics[f"{key}_{row['encoding']}"] = row[key]
    metrics.update(_induction_study(ctx))
    metrics["train_seconds"] = sum(r["train_seconds"] for r in table) + metrics.pop("_seconds")
    return metrics


# ----------------------------------------------------------------------------- training


def _device(ctx: RunContext) -> str:
    return str(resolve_device(ctx.device))


def _train(
    ctx: RunContext, model: GPT, batches: tuple[torch.Tensor, torch.Tensor], steps: int, lr: float
) -> dict[str, float]:
    """Fit ``model`` on the pre-drawn ``batches`` (x, y) with layer 3's trainer."""
    cfg = ctx.config
    loader = build_loader(
        TensorDataset(*batches), cfg["batch_size"], shuffle=True, seed=ctx.seed, drop_last=True
    )
    optimizer = torch.optim.AdamW(decay_groups(model, 0.01), lr=lr, betas=(0.9, 0.98))
    trainer = Trainer(
        model,  # wrapped in Classification: cross-entropy ignores the IGNORE (-100) targets
        optimizer,
        loader,
        TrainerConfig(max_steps=steps, clip_grad_norm=1.0, log_every=max(1, steps // 10)),
        device=_device(ctx),
        scheduler=warmup_cosine(optimizer, steps, 0.1),
    )
    history = trainer.fit()
    return {"train_loss": history["train/loss"], "train_seconds": history["train_seconds"]}


@torch.no_grad()
def _accuracy(model: GPT, x: torch.Tensor, y: torch.Tensor, device: str) -> torch.Tensor:
    """Per-position correct (1), wrong (0) or unscored (nan) predictions, (B, T)."""
    model.eval()
    pred = model(x.to(device)).argmax(-1).cpu()
    out = (pred == y).double()
    out[y == IGNORE] = float("nan")
    return out


# ----------------------------------------------------------------------------- (a) positions


def _positional_run(ctx: RunContext, encoding: str) -> dict[str, Any]:
    cfg = ctx.config
    torch.manual_seed(ctx.seed)
    model = GPT(
        cfg["lag_vocab"], block_size=cfg["eval_len"], n_layer=cfg["lag_n_layer"],
        n_head=cfg["lag_n_head"], n_embd=cfg["lag_n_embd"], pos=encoding, mlp="gelu",
    )  # fmt: skip
    gen = torch.Generator().manual_seed(ctx.seed)
    n = cfg["lag_steps"] * cfg["batch_size"]
    data = lag_copy_batch(n, cfg["train_len"], cfg["lag_vocab"], cfg["lag"], gen)
    fit = _train(ctx, model, data, cfg["lag_steps"], cfg["lag_lr"])
    row = {"encoding": encoding, **fit}
    test_gen = torch.Generator().manual_seed(ctx.seed + 1)  # the same test draws per encoding
    m = cfg["eval_batch_size"] * cfg["eval_batches"]
    for length in (cfg["train_len"], cfg["eval_len"]):
        x, y = lag_copy_batch(m, length, cfg["lag_vocab"], cfg["lag"], test_gen)
        correct = _accuracy(model, x, y, _device(ctx))
        key = "accuracy_64" if length == cfg["train_len"] else "accuracy_128"
        row[key] = float(np.nanmean(correct.numpy()))
        if length == cfg["eval_len"]:
            row["accuracy_unseen"] = float(np.nanmean(correct[:, cfg["train_len"] :].numpy()))
    row["chance"] = 1.0 / cfg["lag_vocab"]
    return row


def _plot_positional(ctx: RunContext, table: list[dict[str, Any]]) -> None:
    cfg = ctx.config
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    names = [r["encoding"] for r in table]
    xs = np.arange(len(names))
    bars = [
        ("accuracy_64", f"length {cfg['train_len']} (trained)"),
        ("accuracy_128", f"length {cfg['eval_len']} (all positions)"),
        ("accuracy_unseen", f"positions {cfg['train_len']}..{cfg['eval_len'] - 1} only"),
    ]
    for i, (key, label) in enumerate(bars):
        ax.bar(xs + (i - 1) * 0.27, [r[key] for r in table], 0.27, label=label)
    ax.axhline(1.0 / cfg["lag_vocab"], color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(xs, names)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("positional encoding")
    ax.set_ylabel(f"accuracy of y_t = x_(t-{cfg['lag']})")
    ax.set_title(f"Lag-{cfg['lag']} copy: trained at length {cfg['train_len']}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ctx.savefig(fig, "positional_encodings.png")


# ----------------------------------------------------------------------------- (b) induction


def _repeat(
    ctx: RunContext, n: int, gen: torch.Generator, period: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training sequences (a period per row from the config's range), or, with ``period``,
    sequences of that one period."""
    cfg = ctx.config
    lo, hi = (
        (period, period) if period else (cfg["induction_min_period"], cfg["induction_max_period"])
    )
    return repeat_batch(
        n, cfg["induction_len"], cfg["induction_vocab"], gen, min_period=lo, max_period=hi
    )


@torch.no_grad()
def attention_maps(model: GPT, x: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention weights (B, H, T, T) on ids ``x`` (the explicit softmax path)."""
    for block in model.blocks:
        block.attn.need_weights = True
    model.eval()
    model(x)
    maps = [block.attn.last_attention.cpu() for block in model.blocks]
    for block in model.blocks:
        block.attn.need_weights = False
    return maps


def _induction_study(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    torch.manual_seed(ctx.seed)
    model = GPT(
        cfg["induction_vocab"], block_size=cfg["induction_len"],
        n_layer=cfg["induction_n_layer"], n_head=cfg["induction_n_head"],
        n_embd=cfg["induction_n_embd"], pos=cfg["induction_pos"], mlp="gelu",
    )  # fmt: skip
    gen = torch.Generator().manual_seed(ctx.seed + 2)
    data = _repeat(ctx, cfg["induction_steps"] * cfg["batch_size"], gen)
    fit = _train(ctx, model, data, cfg["induction_steps"], cfg["induction_lr"])
    # evaluated on the classic probe: T/2 random tokens then the same again (one repeat, so the
    # previous occurrence of every token in the repeat is unique)
    probe_gen = torch.Generator().manual_seed(ctx.seed + 3)
    x, y = _repeat(ctx, cfg["eval_batch_size"], probe_gen, period=cfg["induction_len"] // 2)
    copy_acc = float(np.nanmean(_accuracy(model, x, y, _device(ctx)).numpy()))
    maps = attention_maps(model, x.to(_device(ctx)))
    ind = torch.stack([induction_scores(a, x) for a in maps])  # (L, H)
    prev = torch.stack([previous_token_scores(a) for a in maps])  # (L, H)
    layer, head = divmod(int(ind.argmax()), ind.shape[1])
    prev_head = int(prev[0].argmax())
    ctx.save_arrays(
        "induction_attention.safetensors",
        {f"layer{i}": a[:4].numpy() for i, a in enumerate(maps)} | {"ids": x[:4].numpy()},
        {"induction_scores": ind.tolist(), "previous_token_scores": prev.tolist()},
    )
    _plot_heads(ctx, x[0], maps, (layer, head, float(ind[layer, head])), (prev_head, prev))
    return {
        "induction_score": float(ind[layer, head]),
        "induction_chance": uniform_induction_chance(x),
        "induction_layer": layer,
        "induction_head": head,
        "induction_scores": ind.tolist(),
        "previous_token_score": float(prev[0, prev_head]),
        "previous_token_head": prev_head,
        "previous_token_scores": prev.tolist(),
        "induction_copy_accuracy": copy_acc,
        "induction_train_loss": fit["train_loss"],
        "_seconds": fit["train_seconds"],
    }


def _plot_heads(
    ctx: RunContext,
    ids: torch.Tensor,
    maps: list[torch.Tensor],
    best: tuple[int, int, float],
    prev: tuple[int, torch.Tensor],
) -> None:
    plt = pyplot()
    layer, head, score = best
    prev_head, prev_scores = prev
    period = int(next(q for q in range(1, ids.numel()) if ids[q] == ids[0]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"wspace": 0.45})
    panels = [
        (maps[0][0, prev_head], f"layer 0 head {prev_head}: previous-token head\n"
         f"(mean attention to t-1 = {float(prev_scores[0, prev_head]):.2f})"),
        (maps[layer][0, head], f"layer {layer} head {head}: induction head\n"
         f"(mean attention to s(t)+1 = {score:.2f})"),
    ]  # fmt: skip
    for ax, (a, title) in zip(axes, panels, strict=True):
        im = ax.imshow(a.numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key position s")
        ax.set_ylabel("query position t")
        fig.colorbar(im, ax=ax, fraction=0.046, label="attention weight")
    fig.suptitle(
        f"Repeated random tokens (this sequence repeats every {period}): the induction head "
        f"attends to the token after the previous occurrence (s = t-{period - 1})",
        fontsize=10,
    )
    ctx.savefig(fig, "induction_heads.png")
