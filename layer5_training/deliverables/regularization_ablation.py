"""``regularization_ablation``: what each regulariser does to the generalisation gap, and which
learning rates train with BatchNorm, LayerNorm or no normalisation.

**The task.** A CIFAR-10 subset small enough that the net overfits quickly (``n_train`` training
images, ``n_test`` test images, through layer 3's ``ImageData``: ``configs/data/cifar10.yaml``),
one :class:`~layer5_training.regularization.RegCNN` with BatchNorm, SGD with momentum and a
warm-up + cosine schedule (layer 3's ``warmup_cosine``), the same steps and the same initial
weights (one seed) for every row:

- ``baseline``: no regularisation;
- ``dropout``: dropout ``p`` on the head's two Linear inputs;
- ``weight_decay``: L2 weight decay, SGD's coupled form ``g ← g + λ·θ`` (on every parameter);
- ``augmentation``: random crop of the zero-padded image plus horizontal flip (layer 3's
  counter-based per-sample augmentation);
- ``label_smoothing``: cross-entropy against ``(1-ε)·onehot(y) + ε/K``;
- ``all``: the four together.

**The honest gap.** Train metrics are measured after training in evaluation mode (dropout off,
BatchNorm on running statistics) on a fixed subset of the *training* images without
augmentation, with the plain cross-entropy (no smoothing), exactly as the test metrics are:
``gap = train accuracy - test accuracy``; ``loss gap = test loss - train loss`` (test minus
train, so that both gaps are positive when the net overfits). The training loss the optimiser
saw (with dropout, augmentation, smoothing) is reported apart, as ``fit_loss``.

**Normalisation and the learning rate.** The same net with ``norm`` = batch, layer
(``GroupNorm(1, C)``) or none, each trained at every LR of a log-spaced grid with the same
optimiser (SGD + momentum, constant LR, no warm-up, no regularisation) for ``lr_steps`` steps.
An LR *trains* when the loss stays finite and the mean training loss over the last logging
window ends below ``lr_threshold · ln K`` (``ln K`` is the loss of a uniform guess). The range of
LRs that train is reported per norm, with the final loss against the LR.

Artifacts: ``table.md`` / ``table.json`` (one row per recipe), ``gaps.png`` (bar plots of both
gaps), ``lr_grid.json``, ``lr_range.png`` (final training loss vs LR per norm).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.data import ImageData, ImageDataset, build_loader
from layer3_framework.device import resolve_device
from layer3_framework.repro import seed_everything
from layer3_framework.schedules import warmup_cosine
from layer3_framework.task import Classification
from layer3_framework.train import check_config, compose
from layer3_framework.trainer import NonFiniteLossError, Trainer, TrainerConfig
from layer5_training.regularization import NORMS, RegCNN

ROWS = ("baseline", "dropout", "weight_decay", "augmentation", "label_smoothing", "all")


@dataclass(frozen=True)
class Recipe:
    """One row of the ablation: which regularisers are on."""

    name: str
    dropout: float = 0.0
    weight_decay: float = 0.0
    augment: bool = False
    label_smoothing: float = 0.0


@deliverable(
    quick={
        "data_source": "real",
        "n_train": 5000,  # a CIFAR-10 subset: overfits within a few epochs
        "n_test": None,  # None: all 10 000 test images
        "train_eval": 5000,  # training images evaluated (eval mode, no augmentation)
        "batch_size": 128,
        "eval_batch_size": 500,
        "widths": [16, 32, 64],
        "hidden": 256,
        "precision": "bf16",  # autocast on this CPU: about 1.3x faster than fp32 for this net
        "norm": "batch",  # the ablation's net
        "lr": 0.05,
        "momentum": 0.9,
        "steps": 585,  # 15 epochs of 39 batches
        "dropout": 0.3,
        "weight_decay": 5e-3,
        "label_smoothing": 0.1,
        "norms": ["batch", "layer", "none"],
        "lrs": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
        "lr_steps": 300,
        "lr_threshold": 0.8,  # trains: final train loss < 0.8 ln K
    },
    full={
        "n_train": 10000,
        "widths": [32, 64, 128],
        "steps": 2340,  # 30 epochs of 78 batches
        "lr_steps": 1000,
        "lrs": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
    },
    headline=[f"gap_{r}" for r in ROWS],
)
def regularization_ablation(ctx: RunContext) -> dict[str, Any]:
    """The ablation table and gap plots, then the LR grid per norm."""
    cfg = ctx.config
    _check(cfg)
    data = _data(ctx)
    rows = [_ablation_row(ctx, data, r) for r in ctx.progress(_recipes(cfg), desc="ablation")]
    ctx.write_json("table.json", rows)
    ctx.write_text("table.md", _table(rows, cfg))
    _plot_gaps(ctx, rows)
    grid = _lr_grid(ctx, data)
    ctx.write_json("lr_grid.json", grid)
    _plot_lr_grid(ctx, grid, _threshold(cfg, data))
    return _metrics(rows, grid, cfg)


# ----------------------------------------------------------------------------- set-up


def _check(cfg: dict[str, Any]) -> None:
    unknown = [n for n in [cfg["norm"], *cfg["norms"]] if n not in NORMS]
    if unknown:
        raise ValueError(f"norm(s) {unknown} unknown; expected some of {list(NORMS)}")
    bad = [lr for lr in [cfg["lr"], *cfg["lrs"]] if not lr > 0]
    if bad:
        raise ValueError(f"learning rates must be > 0, got {bad}")
    if len(cfg["lrs"]) < 2 or sorted(cfg["lrs"]) != list(cfg["lrs"]):
        raise ValueError(f"lrs must be at least two increasing values, got {cfg['lrs']}")
    if not 0 < cfg["lr_threshold"] <= 1:
        raise ValueError(f"lr_threshold={cfg['lr_threshold']}: expected a fraction in (0, 1]")
    for key in ("steps", "lr_steps", "train_eval"):
        if cfg[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]}")


def _recipes(cfg: dict[str, Any]) -> list[Recipe]:
    p, wd, eps = cfg["dropout"], cfg["weight_decay"], cfg["label_smoothing"]
    return [
        Recipe("baseline"),
        Recipe("dropout", dropout=p),
        Recipe("weight_decay", weight_decay=wd),
        Recipe("augmentation", augment=True),
        Recipe("label_smoothing", label_smoothing=eps),
        Recipe("all", dropout=p, weight_decay=wd, augment=True, label_smoothing=eps),
    ]


def _data(ctx: RunContext) -> ImageData:
    """CIFAR-10 as ``configs/data/cifar10.yaml`` describes it (crop padding 4, flip), subset."""
    cfg = ctx.config
    overrides = [
        "data=cifar10",
        f"data.source={cfg['data_source']}",
        f"data.n_train={cfg['n_train']}",
        f"data.batch_size={cfg['batch_size']}",
        f"data.eval_batch_size={cfg['eval_batch_size']}",
    ]
    if cfg["n_test"] is not None:
        overrides.append(f"data.n_test={cfg['n_test']}")
    data = check_config(compose(overrides)).data
    data.setup(ctx.seed)
    return data


def _train_set(data: ImageData, augment: bool, seed: int, n: int | None = None) -> ImageDataset:
    """The (first ``n``) training images, augmented or not, with the data module's transform."""
    train = data.setup(seed).train
    images, labels = train.images[:n].numpy(), train.labels[:n].numpy()
    return ImageDataset(images, labels, data.transform, augment=augment, seed=seed)


def _threshold(cfg: dict[str, Any], data: ImageData) -> float:
    return cfg["lr_threshold"] * math.log(len(data.classes))


# ----------------------------------------------------------------------------- training


def _fit(
    ctx: RunContext,
    data: ImageData,
    model: RegCNN,
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    augment: bool = False,
    label_smoothing: float = 0.0,
    scheduler: Any = None,
) -> tuple[Trainer, dict[str, float]]:
    """Train ``model`` on the training set for ``steps`` steps with layer 3's trainer."""
    cfg = ctx.config
    loader = build_loader(
        _train_set(data, augment, ctx.seed),
        cfg["batch_size"],
        shuffle=True,
        seed=ctx.seed,
        drop_last=True,
    )
    trainer = Trainer(
        Classification(model, label_smoothing=label_smoothing),
        optimizer,
        loader,
        TrainerConfig(
            max_steps=steps,
            log_every=max(1, min(50, steps // 4)),
            precision=cfg["precision"],
            progress=False,
        ),
        device=resolve_device(ctx.device),
        scheduler=scheduler,
    )
    return trainer, trainer.fit()


def _model(cfg: dict[str, Any], data: ImageData, seed: int, **kwargs: Any) -> RegCNN:
    """A RegCNN with the run's seed: every row starts from the same weights."""
    seed_everything(seed)
    c, h, _ = data.shape
    return RegCNN(c, len(data.classes), h, widths=cfg["widths"], hidden=cfg["hidden"], **kwargs)


def _ablation_row(ctx: RunContext, data: ImageData, recipe: Recipe) -> dict[str, Any]:
    """Train one recipe; measure train (eval mode, no augmentation) and test metrics."""
    cfg = ctx.config
    model = _model(cfg, data, ctx.seed, norm=cfg["norm"], dropout=recipe.dropout)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg["lr"],
        momentum=cfg["momentum"],
        weight_decay=recipe.weight_decay,
    )
    clock = time.perf_counter()
    trainer, history = _fit(
        ctx,
        data,
        model,
        optimizer,
        steps=cfg["steps"],
        augment=recipe.augment,
        label_smoothing=recipe.label_smoothing,
        scheduler=warmup_cosine(optimizer, cfg["steps"]),
    )
    train_eval = build_loader(
        _train_set(data, False, ctx.seed, cfg["train_eval"]), cfg["eval_batch_size"], shuffle=False
    )
    tr = trainer.evaluate(train_eval)
    te = trainer.evaluate(data.eval_loader(ctx.seed))
    return {
        **asdict(recipe),
        "train_accuracy": tr["accuracy"],
        "test_accuracy": te["accuracy"],
        "gap": tr["accuracy"] - te["accuracy"],
        "train_loss": tr["loss"],
        "test_loss": te["loss"],
        "loss_gap": te["loss"] - tr["loss"],
        "fit_loss": history["train/loss"],
        "steps": trainer.step,
        "seconds": time.perf_counter() - clock,
    }


def _lr_point(ctx: RunContext, data: ImageData, norm: str, lr: float) -> dict[str, Any]:
    """Train the unregularised net with ``norm`` at a constant ``lr``; its final train loss."""
    cfg = ctx.config
    model = _model(cfg, data, ctx.seed, norm=norm)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg["momentum"])
    try:
        _, history = _fit(ctx, data, model, optimizer, steps=cfg["lr_steps"])
        loss = history["train/loss"]
    except NonFiniteLossError:
        loss = math.nan
    trains = math.isfinite(loss) and loss < _threshold(cfg, data)
    return {"norm": norm, "lr": lr, "final_train_loss": loss, "trains": trains}


def _lr_grid(ctx: RunContext, data: ImageData) -> dict[str, Any]:
    cfg = ctx.config
    pairs = [(n, lr) for n in cfg["norms"] for lr in cfg["lrs"]]
    points = [_lr_point(ctx, data, n, lr) for n, lr in ctx.progress(pairs, desc="LR grid")]
    ranges = {n: lr_range([p for p in points if p["norm"] == n]) for n in cfg["norms"]}
    return {"threshold": _threshold(cfg, data), "points": points, "ranges": ranges}


def lr_range(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The LRs that train: ``[min, max]`` of them (None when none does) and how many."""
    ok = sorted(p["lr"] for p in points if p["trains"])
    return {"range": [ok[0], ok[-1]] if ok else None, "count": len(ok)}


# ----------------------------------------------------------------------------- reporting


def _metrics(rows: list[dict[str, Any]], grid: dict[str, Any], cfg: dict[str, Any]) -> dict:
    out: dict[str, Any] = {}
    for r in rows:
        out[f"gap_{r['name']}"] = r["gap"]
        out[f"loss_gap_{r['name']}"] = r["loss_gap"]
        out[f"test_accuracy_{r['name']}"] = r["test_accuracy"]
        out[f"train_accuracy_{r['name']}"] = r["train_accuracy"]
    for norm, rng in grid["ranges"].items():
        out[f"lr_range_{norm}"] = rng["range"]
        out[f"lr_count_{norm}"] = rng["count"]
    out["lr_grid_size"] = len(cfg["lrs"])
    out["ablation_seconds"] = sum(r["seconds"] for r in rows)
    return out


def _table(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    head = (
        f"Train metrics: eval mode on {cfg['train_eval']} training images, no augmentation. "
        f"{cfg['steps']} steps of batch {cfg['batch_size']} for each row.\n\n"
        "| row | train acc | test acc | gap (acc) | train loss | test loss | gap (loss) "
        "| seconds |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['name']} | {r['train_accuracy']:.4f} | {r['test_accuracy']:.4f} | "
        f"{r['gap']:.4f} | {r['train_loss']:.4f} | {r['test_loss']:.4f} | "
        f"{r['loss_gap']:.4f} | {r['seconds']:.0f} |\n"
        for r in rows
    )
    return head + body


def _plot_gaps(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    plt = pyplot()
    names = [r["name"].replace("_", " ") for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = [
        ("gap", "train acc - test acc", "accuracy gap"),
        ("loss_gap", "test loss - train loss", "loss gap"),
    ]
    for ax, (key, ylabel, title) in zip(axes, panels, strict=True):
        values = [r[key] for r in rows]
        bars = ax.bar(
            names, values, color=["grey"] + ["tab:blue"] * (len(rows) - 2) + ["tab:green"]
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.axhline(values[0], color="grey", ls="--", lw=1, label="baseline")
        ax.tick_params(axis="x", labelrotation=25)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} (eval mode, un-augmented train images)")
        ax.legend(loc="upper right")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Generalisation gap per regulariser, CIFAR-10 subset, RegCNN")
    fig.tight_layout()
    ctx.savefig(fig, "gaps.png")


def _plot_lr_grid(ctx: RunContext, grid: dict[str, Any], threshold: float) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cap = 4 * threshold  # diverged (NaN) and exploded losses are drawn at the top
    for norm in dict.fromkeys(p["norm"] for p in grid["points"]):
        pts = [p for p in grid["points"] if p["norm"] == norm]
        lrs = np.array([p["lr"] for p in pts])
        loss = np.array([p["final_train_loss"] for p in pts])
        shown = np.where(np.isfinite(loss), np.minimum(loss, cap), cap)
        bad = ~np.isfinite(loss)
        label = f"{norm}: {lr_range(pts)['count']} of {len(pts)} train"
        if bad.any():
            label += ", NaN at " + ", ".join(f"{lr:g}" for lr in lrs[bad])
        (line,) = ax.plot(lrs, shown, marker="o", label=label)
        ax.scatter(lrs[bad], shown[bad], marker="x", s=80, color=line.get_color())
    ax.axhline(threshold, color="black", ls="--", lw=1, label=f"threshold: {threshold:.2f}")
    ax.set_xscale("log")
    ax.set_ylim(0, cap * 1.05)
    ax.set_xlabel("learning rate (SGD + momentum, constant)")
    ax.set_ylabel(f"final train loss (capped at {cap:.1f}; x: NaN)")
    ax.set_title("Which learning rates train, per normalisation")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    ctx.savefig(fig, "lr_range.png")
