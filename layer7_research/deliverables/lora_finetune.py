"""``lora_finetune``: layer 4's TinyStories GPT adapted to Shakespeare, every way at once.

The base model (``load_base("gpt")``, its BPE tokenizer from its own checkpoint) has only read
children's stories. It is adapted to tiny shakespeare (layer 0's text; the last 10% of its
characters is validation, layer 4's :func:`~layer4_architectures.sequence.bpe.train_val_split`;
both halves encoded with the GPT's own tokenizer, windows of the GPT's ``block_size``) by:

- **zero-shot**: no training (the base scored on the validation windows);
- **full fine-tuning**: every parameter trained;
- **LoRA** at ranks r ∈ ``ranks`` on the attention projections (``attn.qkv`` and
  ``attn.out_proj`` of every block, :func:`~layer7_research.adaptation.apply_lora`), α = 2r
  (α/r = ``alpha_over_r``); the full preset adds LoRA on attention + MLP (``mlp_ranks``);
- **a bottleneck adapter** of width ``adapter_bottleneck`` after both sublayers of every block.

Every method trains with layer 3's :class:`~layer3_framework.trainer.Trainer` and the GPT's own
task (:class:`~layer3_framework.task.Classification`, next-token cross-entropy, as
``configs/experiment/gpt_tinystories.yaml`` trains it), the GPT's optimiser recipe (layer 4's
AdamW with warm-up and cosine floor), the same steps and the same batches (one seed), and its own
learning rate (LoRA and adapters want about 10x full fine-tuning's). Per method: validation loss
in nats/token and bits per byte, trainable parameters, the bytes actually held in
``optimizer.state``, training seconds.

Artifacts: ``table.md``, ``val_loss_vs_params.png`` (log x), ``loss_curves.png``,
``samples.txt`` (the base vs the best LoRA model, same prompt, same seed), and the best LoRA
model merged into a plain GPT (``lora_merged/checkpoints/``, layer 3's self-describing format:
``load_model`` rebuilds it with no LoRA code).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from layer0_math.datasets import load
from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.checkpoint import checkpoint_path, load_model, save_checkpoint
from layer3_framework.data import CharDataset, build_loader
from layer3_framework.device import resolve_device
from layer3_framework.repro import seed_everything
from layer3_framework.task import Classification
from layer3_framework.trainer import Trainer, TrainerConfig
from layer4_architectures.sequence.bpe import train_val_split
from layer4_architectures.sequence.data import (
    HOLDOUT,
    RandomWindows,
    bits_per_byte,
    load_tokenizer,
)
from layer4_architectures.sequence.lm_optim import adamw, warmup_cosine_floor
from layer5_training.benchmarking import state_bytes
from layer7_research.adaptation import (
    apply_adapters,
    apply_lora,
    merge_lora,
    trainable_parameters,
)
from layer7_research.artifacts import load_base, preprocessing, source_dir

ATTN = ["attn.qkv", "attn.out_proj"]
MLP = ["mlp.up", "mlp.gate", "mlp.out_proj"]


@deliverable(
    quick={
        "ranks": [1, 2, 4, 8, 16],
        "mlp_ranks": [],  # LoRA on attention + MLP at these ranks (full preset)
        "alpha_over_r": 2.0,  # α = 2r
        "lora_dropout": 0.0,
        "adapter_bottleneck": 12,  # ≈ LoRA r = 8's parameter budget on this GPT
        "steps": 150,
        "batch_size": 8,
        "eval_every": 50,
        "n_val_windows": 96,  # None: every validation window
        "full_ft_lr": 5.0e-4,
        "lora_lr": 5.0e-3,
        "adapter_lr": 5.0e-3,
        "weight_decay": 0.0,
        "clip_grad_norm": 1.0,
        "prompt": "ROMEO:\n",
        "sample_tokens": 80,
        "temperature": 0.8,
        "top_k": 40,
    },
    full={
        "mlp_ranks": [1, 2, 4, 8, 16],
        "steps": 2000,
        "batch_size": 32,
        "eval_every": 200,
        "n_val_windows": None,
        "sample_tokens": 200,
    },
    headline=[
        "base_val_loss",
        "full_ft_val_loss",
        "lora_r8_val_loss",
        "adapter_val_loss",
        "lora_r8_trainable_fraction",
    ],
)
def lora_finetune(ctx: RunContext) -> dict[str, Any]:
    """Zero-shot vs full fine-tuning vs LoRA ranks vs an adapter, on Shakespeare."""
    cfg = ctx.config
    base = load_base("gpt")
    tok = load_tokenizer(preprocessing(base))
    data = shakespeare(tok, base.config.block_size, cfg["steps"] * cfg["batch_size"], ctx.seed)
    data.val = _val_subset(data.val, cfg["n_val_windows"])
    device = resolve_device(ctx.device)
    results, best = [], None
    for method in ctx.progress(methods(cfg), desc="methods"):
        result, model = fine_tune(base, method, data, cfg, ctx.seed, device)
        results.append(result)
        if method.kind == "lora" and (best is None or result["val_loss"] < best[0]["val_loss"]):
            best = (result, model)
    zero = _zero_shot(results[0], data)
    rows = [zero, *results]
    best_result, best_model = best
    merged = merge_lora(best_model.cpu())
    reload_diff = _save_merged(ctx, merged, best_result, data)
    _write_samples(ctx, base, merged, tok, best_result["method"])
    _plot_params(ctx, rows)
    _plot_curves(ctx, rows)
    ctx.write_text("table.md", table(rows, trainable_parameters(base)))
    return _metrics(rows, trainable_parameters(base), best_result, reload_diff, data)


# ----------------------------------------------------------------------------- data


@dataclass
class StyleData:
    """The target style as token windows: random training windows, contiguous validation."""

    train: RandomWindows
    val: CharDataset
    token_bytes: np.ndarray  # UTF-8 bytes of each token id, (V,)
    train_tokens: int
    val_tokens: int

    def bytes_per_token(self) -> float:
        """Mean UTF-8 bytes of the validation targets (bits per byte = nats/token / (b ln 2))."""
        targets = self.val.ids[1 : len(self.val) * self.val.seq_len + 1].numpy()
        return float(self.token_bytes[targets].mean())


def shakespeare(tok: Any, seq_len: int, n_train: int, seed: int) -> StyleData:
    """tiny shakespeare split 90/10 by characters, encoded with the base model's tokenizer."""
    train_text, val_text = train_val_split(str(load("tiny_shakespeare")), HOLDOUT)
    train_ids = np.asarray(tok.encode_to_array(train_text))
    val_ids = np.asarray(tok.encode_to_array(val_text))
    return StyleData(
        train=RandomWindows(train_ids, seq_len, n_train, seed=seed),
        val=CharDataset(val_ids, seq_len),
        token_bytes=np.array([len(tok.token_bytes(i)) for i in range(tok.vocab_size)]),
        train_tokens=len(train_ids),
        val_tokens=len(val_ids),
    )


def _val_subset(val: CharDataset, n_windows: int | None) -> CharDataset:
    """The first ``n_windows`` validation windows (all of them for None)."""
    if n_windows is None or n_windows >= len(val):
        return val
    if n_windows < 1:
        raise ValueError(f"n_val_windows must be >= 1 or None, got {n_windows}")
    return CharDataset(val.ids[: n_windows * val.seq_len + 1].numpy(), val.seq_len)


# ----------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """One way to adapt the base: ``kind`` full | lora | adapter, its size and learning rate."""

    name: str
    kind: str
    lr: float
    r: int = 0
    targets: tuple[str, ...] = ()
    bottleneck: int = 0


def methods(cfg: dict[str, Any]) -> list[Method]:
    """Full fine-tuning, LoRA at each rank (attention; attention + MLP), the adapter."""
    out = [Method("full_ft", "full", cfg["full_ft_lr"])]
    for r in cfg["ranks"]:
        out.append(Method(f"lora_r{r}", "lora", cfg["lora_lr"], r, tuple(ATTN)))
    for r in cfg["mlp_ranks"]:
        out.append(Method(f"lora_mlp_r{r}", "lora", cfg["lora_lr"], r, tuple(ATTN + MLP)))
    out.append(
        Method("adapter", "adapter", cfg["adapter_lr"], bottleneck=cfg["adapter_bottleneck"])
    )
    return out


def adapt(base: nn.Module, method: Method, cfg: dict[str, Any]) -> nn.Module:
    """A copy of the base, prepared for ``method`` (the base itself is never changed)."""
    model = copy.deepcopy(base)
    if method.kind == "lora":
        alpha = cfg["alpha_over_r"] * method.r
        apply_lora(model, method.targets, method.r, alpha, cfg["lora_dropout"])
    elif method.kind == "adapter":
        apply_adapters(model, method.bottleneck)
    return model


def _trainer(
    model: nn.Module, method: Method, data: StyleData, cfg: dict, seed: int, device: torch.device
) -> Trainer:
    """Layer 3's trainer on the GPT's task and optimiser recipe, at the method's learning rate."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, lr=method.lr, weight_decay=cfg["weight_decay"])
    trainer_cfg = TrainerConfig(
        max_steps=cfg["steps"],
        clip_grad_norm=cfg["clip_grad_norm"],
        log_every=max(1, cfg["eval_every"] // 5),
        eval_every=cfg["eval_every"],
    )
    return Trainer(
        Classification(model),
        optimizer,
        build_loader(data.train, cfg["batch_size"], shuffle=True, seed=seed),
        trainer_cfg,
        device=device,
        scheduler=warmup_cosine_floor(optimizer, cfg["steps"]),
        eval_loader=build_loader(data.val, cfg["batch_size"], shuffle=False, seed=seed),
    )


def fine_tune(
    base: nn.Module, method: Method, data: StyleData, cfg: dict, seed: int, device: torch.device
) -> tuple[dict[str, Any], nn.Module]:
    """Train one method from the base (same seed, so the same batches); its measurements."""
    seed_everything(seed)  # LoRA's A and the adapters' W_down draw from here
    model = adapt(base, method, cfg)
    trainer = _trainer(model, method, data, cfg, seed, device)
    # before the first step every method *is* the base (B = 0, W_up = 0): the zero-shot score
    start_eval = trainer.evaluate()["loss"] if method.kind == "full" else None
    start = time.perf_counter()
    final = trainer.fit()
    curves = {
        key: [(r["step"], r[key]) for r in trainer.history if key in r]
        for key in ("train/loss", "eval/loss")
    }
    result = {
        "method": method.name,
        "kind": method.kind,
        "r": method.r,
        "targets": list(method.targets),
        "lr": method.lr,
        "trainable": trainable_parameters(model),
        "val_loss": final["eval/loss"],
        "val_bpb": bits_per_byte(final["eval/loss"], data.bytes_per_token()),
        "optimizer_state_bytes": state_bytes(trainer.optimizer),
        "train_seconds": final["train_seconds"],
        "wall_seconds": time.perf_counter() - start,
        "curves": curves,
        "start_val_loss": start_eval,
    }
    return result, model


def _zero_shot(full: dict[str, Any], data: StyleData) -> dict[str, Any]:
    loss = full["start_val_loss"]
    return {
        "method": "zero_shot",
        "kind": "none",
        "r": 0,
        "targets": [],
        "lr": 0.0,
        "trainable": 0,
        "val_loss": loss,
        "val_bpb": bits_per_byte(loss, data.bytes_per_token()),
        "optimizer_state_bytes": 0,
        "train_seconds": 0.0,
        "wall_seconds": 0.0,
        "curves": {"train/loss": [], "eval/loss": [(0, loss)]},
    }


# ----------------------------------------------------------------------------- artifacts


def _save_merged(ctx: RunContext, merged: nn.Module, best: dict, data: StyleData) -> float:
    """The merged LoRA model as a self-describing checkpoint; the max |Δlogit| after reload."""
    spec = dict(merged.dlstack_spec)
    spec["state_prefix"] = ""
    spec["preprocessing"] = {
        **spec["preprocessing"],
        "bytes_per_token_val": data.bytes_per_token(),
    }
    folder = ctx.out_dir / "lora_merged"
    save_checkpoint(
        checkpoint_path(folder / "checkpoints", ctx.config["steps"]),
        model=merged,
        step=ctx.config["steps"],
        model_spec=spec,
        config=ctx.config,
        extra={
            "base": str(source_dir("gpt")),
            "fine_tuned_on": "tiny_shakespeare",
            "method": best["method"],
            "lora": {"r": best["r"], "alpha": ctx.config["alpha_over_r"] * best["r"]},
            "targets": best["targets"],
        },
    )
    reloaded = load_model(folder)
    x = data.val[0][0][None]  # (1, T)
    with torch.no_grad():
        return float((reloaded(x) - merged.eval()(x)).abs().max())


def _write_samples(ctx: RunContext, base: nn.Module, tuned: nn.Module, tok: Any, name: str) -> None:
    """The base and the tuned model continue the same prompt with the same sampling seed."""
    cfg = ctx.config
    ids = torch.tensor([tok.encode(cfg["prompt"])], dtype=torch.long)
    n = min(cfg["sample_tokens"], base.config.block_size - ids.shape[1])
    parts = []
    for label, model in (("base (zero-shot)", base), (f"{name}, merged", tuned)):
        out = model.generate(
            ids, n, temperature=cfg["temperature"], top_k=cfg["top_k"], eos_id=tok.eot_id,
            seed=ctx.seed,
        )  # fmt: skip
        parts.append(f"## {label}\n\n{tok.decode(out[0].tolist(), errors='replace')}")
    ctx.write_text("samples.txt", "\n\n".join(parts) + "\n")


def table(rows: list[dict[str, Any]], total: int) -> str:
    """One markdown row per method."""
    lines = [
        "| method | trained | parameters | % of model | lr | val loss (nats/token) | "
        "val bpb | optimizer state (KiB) | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        trained = {
            "none": "nothing",
            "full": "everything",
            "lora": "LoRA on " + ", ".join(r["targets"]),
            "adapter": "adapters after attn and MLP",
        }[r["kind"]]
        lines.append(
            f"| {r['method']} | {trained} | {r['trainable']:,} | {100 * r['trainable'] / total:.2f}"
            f" | {r['lr']:g} | {r['val_loss']:.4f} | {r['val_bpb']:.4f} | "
            f"{r['optimizer_state_bytes'] / 1024:,.1f} | {r['train_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _plot_params(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for prefix, label, colour in (
        ("lora_r", "LoRA, attention", "C0"),
        ("lora_mlp_r", "LoRA, attn + MLP", "C3"),
    ):
        pts = [r for r in rows if r["method"].startswith(prefix)]
        if pts:
            ax.plot(
                [r["trainable"] for r in pts],
                [r["val_loss"] for r in pts],
                "o-",
                color=colour,
                label=label,
            )
            for r in pts:
                ax.annotate(
                    f"r={r['r']}",
                    (r["trainable"], r["val_loss"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
    for kind, marker, colour, label in (
        ("full", "s", "C1", "full fine-tuning"),
        ("adapter", "^", "C2", "bottleneck adapter"),
    ):
        for r in (r for r in rows if r["kind"] == kind):
            ax.plot(r["trainable"], r["val_loss"], marker, color=colour, markersize=9, label=label)
    zero = next(r for r in rows if r["kind"] == "none")
    ax.axhline(zero["val_loss"], color="grey", ls="--", label="zero-shot (base)")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title(f"TinyStories GPT → tiny shakespeare, {ctx.config['steps']} steps each")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ctx.savefig(fig, "val_loss_vs_params.png")


def _plot_curves(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, (ax_t, ax_v) = plt.subplots(1, 2, figsize=(12, 4.5))
    zero = next(r for r in rows if r["kind"] == "none")["val_loss"]
    for i, r in enumerate(r for r in rows if r["kind"] != "none"):
        colour = f"C{i % 10}"
        ax_t.plot(*zip(*r["curves"]["train/loss"], strict=True), color=colour, label=r["method"])
        steps, values = zip(*[(0, zero), *r["curves"]["eval/loss"]], strict=True)
        ax_v.plot(steps, values, "o-", color=colour, label=r["method"])
    for ax, what in ((ax_t, "training"), (ax_v, "validation")):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"{what} loss (nats / token)")
        ax.set_title(f"{what} loss, tiny shakespeare")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ctx.savefig(fig, "loss_curves.png")


def _metrics(
    rows: list[dict[str, Any]], total: int, best: dict, reload_diff: float, data: StyleData
) -> dict[str, Any]:
    by = {r["method"]: r for r in rows}
    metrics: dict[str, Any] = {"base_val_loss": by["zero_shot"]["val_loss"]}
    for name, r in by.items():
        key = "base" if name == "zero_shot" else name
        metrics[f"{key}_val_loss"] = r["val_loss"]
        metrics[f"{key}_val_bpb"] = r["val_bpb"]
        if name != "zero_shot":
            metrics[f"{key}_trainable"] = r["trainable"]
            metrics[f"{key}_trainable_fraction"] = r["trainable"] / total
            metrics[f"{key}_optimizer_state_bytes"] = r["optimizer_state_bytes"]
            metrics[f"{key}_train_seconds"] = r["train_seconds"]
    metrics.update(
        {
            "base_parameters": total,
            "best_lora": best["method"],
            "merged_reload_max_abs_diff": reload_diff,
            "train_tokens": data.train_tokens,
            "val_tokens_scored": len(data.val) * data.val.seq_len,
            "val_bytes_per_token": data.bytes_per_token(),
            "train_seconds_total": sum(r["train_seconds"] for r in rows),
            "methods": [{k: v for k, v in r.items() if k != "curves"} for r in rows],
        }
    )
    return metrics
