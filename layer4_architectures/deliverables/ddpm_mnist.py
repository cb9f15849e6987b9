"""``ddpm_mnist``: a class-conditional DDPM on MNIST, sampled three ways, judged by one yardstick.

1. Train the U-Net ε_θ through layer 3's pipeline (``experiment=ddpm_mnist``: the diffusion
   task, AdamW, an EMA of the weights) into the sub-run ``train/``: a self-describing checkpoint
   (the schedule's name and T in its model spec) that layer 6 serves and layer 7 extends.
2. Rebuild the denoiser from that checkpoint alone (EMA weights) and draw ``n_samples`` images,
   one tenth of each class, with the DDPM ancestral sampler (all T steps) and DDIM (η = 0) with
   50 and 10 steps; each sampler is timed.
3. Score every set with the yardstick (:mod:`layer4_architectures.generative.yardstick`: FID
   and KID on the feature classifier's features against the MNIST test set, confident share,
   class entropy) beside the real-vs-real floor at the same n.

Artifacts: ``samples_<sampler>.npy`` (N, 1, 28, 28) float32 in [0, 1] with
``labels.npy`` (the class each was asked for), ``sample_grid.png`` (10×10, one row per class),
``denoising_strip.png`` (x_T → x_0 at 8 timesteps, one row per class), ``loss_by_timestep.png``
(the training loss and the EMA model's evaluation loss per timestep bucket), ``scores.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer0_math.files import atomic_file
from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.loggers import read_jsonl
from layer3_framework.train import compose, run
from layer4_architectures.generative.diffusion import NUM_DIGITS, Diffusion, to_unit
from layer4_architectures.generative.yardstick import Yardstick

TRAIN_FOLDER = "train"
STRIP_FRAMES = 8


@deliverable(
    quick={
        "schedule": "linear",
        "timesteps": 100,
        "base_channels": 16,
        "steps": 1400,
        "batch_size": 128,
        "lr": 2.0e-3,
        "ema_decay": 0.995,
        "class_dropout": 0.1,
        "n_samples": 1000,
        "ddim_steps": [50, 10],
        "chunk_size": 1000,
        "data_source": "real",
        "n_train": None,
    },
    full={
        "timesteps": 1000,
        "base_channels": 64,
        "steps": 20000,
        "ema_decay": 0.9995,
        "n_samples": 10000,
        "chunk_size": 2500,
    },
    headline=["confident_share", "class_entropy", "fid", "kid", "ddim50_fid", "fid_floor"],
)
def ddpm_mnist(ctx: RunContext) -> dict[str, Any]:
    """Train the DDPM, sample with DDPM and DDIM, score the samples, draw the figures."""
    cfg = ctx.config
    yardstick = Yardstick.from_runs(device=ctx.device)  # first: a missing classifier fails fast
    trained = run(
        compose(_overrides(ctx)),
        ctx.out_dir / TRAIN_FOLDER,
        device=ctx.device,
        parent_id=ctx.run_id,
    )
    diffusion = Diffusion.from_checkpoint(ctx.out_dir / TRAIN_FOLDER, device=ctx.device)
    labels = torch.arange(cfg["n_samples"]) % NUM_DIGITS
    _save_npy(ctx.path("labels.npy"), labels.numpy())
    samples, seconds = _sample_all(ctx, diffusion, labels)
    scores = {name: yardstick.score(x) for name, x in samples.items()}
    floor = yardstick.floor(cfg["n_samples"])
    ctx.write_json("scores.json", {"scores": scores, "floor": floor})
    _plot_grid(ctx, samples["ddpm"], labels)
    _plot_strip(ctx, diffusion)
    _plot_losses(ctx, ctx.out_dir / TRAIN_FOLDER, trained, diffusion.schedule.timesteps)
    return _metrics(trained, diffusion, scores, floor, seconds, yardstick)


def _overrides(ctx: RunContext) -> list[str]:
    cfg = ctx.config
    out = [
        "experiment=ddpm_mnist",
        f"seed={ctx.seed}",
        f"model.schedule={cfg['schedule']}",
        f"model.timesteps={cfg['timesteps']}",
        f"model.base_channels={cfg['base_channels']}",
        f"task.class_dropout={cfg['class_dropout']}",
        f"task.seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['batch_size']}",
        f"optim.lr={cfg['lr']}",
        f"trainer.max_steps={cfg['steps']}",
        f"trainer.log_every={max(1, min(50, cfg['steps'] // 20))}",
        f"ema.decay={cfg['ema_decay']}",
        "logger=jsonl",
    ]
    if cfg["n_train"] is not None:
        out += [f"data.n_train={cfg['n_train']}", f"data.n_test={cfg['n_train']}"]
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as f:
        np.save(f, array)


def _sample_all(
    ctx: RunContext, diffusion: Diffusion, labels: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``samples_<name>.npy`` for DDPM and each DDIM step count, and seconds per 1,000 images."""
    cfg = ctx.config
    plans = [("ddpm", "ddpm", None)] + [(f"ddim{k}", "ddim", k) for k in cfg["ddim_steps"]]
    samples, seconds = {}, {}
    for name, sampler, steps in plans:
        start = time.perf_counter()
        x, _ = diffusion.sample(
            len(labels),
            sampler=sampler,
            steps=steps,
            classes=labels,
            seed=ctx.seed,
            chunk_size=cfg["chunk_size"],
            progress=lambda it, total, name=name: ctx.progress(it, total=total, desc=name),
        )
        seconds[name] = (time.perf_counter() - start) * 1000 / len(labels)
        samples[name] = to_unit(x)  # (N, 1, 28, 28) in [0, 1]
        _save_npy(ctx.path(f"samples_{name}.npy"), samples[name].numpy())
    return samples, seconds


def _metrics(
    trained: dict[str, Any],
    diffusion: Diffusion,
    scores: dict[str, dict[str, Any]],
    floor: dict[str, float],
    seconds: dict[str, float],
    yardstick: Yardstick,
) -> dict[str, Any]:
    main = scores["ddpm"]
    out: dict[str, Any] = {
        "confident_share": main["confident_share"],
        "class_entropy": main["class_entropy"],
        "fid": main["fid"],
        "kid": main["kid"],
        "kid_std": main["kid_std"],
        **floor,
        "feature_classifier_accuracy": yardstick.classifier_accuracy,
        "n_samples": main["n"],
    }
    for name, s in scores.items():
        if name != "ddpm":
            out.update({f"{name}_{k}": s[k] for k in ("fid", "kid", "confident_share")})
            out[f"{name}_class_entropy"] = s["class_entropy"]
    if "ddim50" in scores:
        out["ddim50_fid_ratio"] = scores["ddim50"]["fid"] / main["fid"]
    out.update({f"sample_seconds_per_1000_{k}": v for k, v in seconds.items()})
    out.update(
        {
            "train_seconds": trained["train_seconds"],
            "train_steps": trained["step"],
            "train_loss": trained["train_loss"],
            "test_loss": trained["test_loss"],
            "parameters": sum(p.numel() for p in diffusion.model.parameters()),
            "schedule": diffusion.schedule.name,
            "timesteps": diffusion.schedule.timesteps,
            "checkpoint": trained["checkpoint"],
        }
    )
    return out


# ----------------------------------------------------------------------------- figures


def _plot_grid(ctx: RunContext, samples: torch.Tensor, labels: torch.Tensor) -> None:
    """10×10: row c holds the first ten samples asked for class c."""
    plt = pyplot()
    fig, axes = plt.subplots(NUM_DIGITS, NUM_DIGITS, figsize=(7, 7.4))
    for c in range(NUM_DIGITS):
        picks = samples[labels == c][:NUM_DIGITS]
        for j, ax in enumerate(axes[c]):
            if j < len(picks):
                ax.imshow(picks[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[c, 0].set_ylabel(str(c), rotation=0, labelpad=10, fontsize=11)
    fig.suptitle("DDPM samples (EMA weights), one row per class asked for", fontsize=11)
    ctx.savefig(fig, "sample_grid.png")


def _strip_times(timesteps: int) -> list[int]:
    """8 timesteps from T down to 1, evenly spaced."""
    return sorted({int(v) for v in np.linspace(timesteps, 1, STRIP_FRAMES).round()}, reverse=True)


def _plot_strip(ctx: RunContext, diffusion: Diffusion) -> None:
    """One DDPM chain per class: x_t at 8 timesteps from T to 1, then the sample x_0."""
    times = _strip_times(diffusion.schedule.timesteps)
    labels = torch.arange(NUM_DIGITS)
    x0, kept = diffusion.sample(NUM_DIGITS, classes=labels, seed=ctx.seed + 1, keep=times)
    frames = [kept[t] for t in times] + [x0]
    titles = [f"t={t}" for t in times] + ["x_0"]
    plt = pyplot()
    fig, axes = plt.subplots(NUM_DIGITS, len(frames), figsize=(len(frames) * 0.8, 8))
    for c in range(NUM_DIGITS):
        for j, frame in enumerate(frames):
            ax = axes[c, j]
            ax.imshow(to_unit(frame[c, 0]).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(titles[j], fontsize=8)
        axes[c, 0].set_ylabel(str(c), rotation=0, labelpad=8)
    fig.suptitle("Denoising: x_T → x_0 (DDPM ancestral sampler)", fontsize=10)
    ctx.savefig(fig, "denoising_strip.png")


def _plot_losses(ctx: RunContext, train_dir: Path, trained: dict, timesteps: int) -> None:
    """Left: the training loss over steps. Right: the evaluation loss per timestep bucket."""
    records = read_jsonl(train_dir / "metrics.jsonl")
    curve = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
    buckets = sorted(
        (int(k.removeprefix("test_loss_b")), v)
        for k, v in trained.items()
        if k.startswith("test_loss_b")
    )
    width = timesteps / len(buckets)
    centres = [(k + 0.5) * width for k, _ in buckets]
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(*zip(*curve, strict=True))
    left.set(xlabel="optimizer step", ylabel="‖ε − ε̂‖² per pixel", title="training loss")
    left.set_yscale("log")
    right.bar(centres, [v for _, v in buckets], width=width * 0.9)
    right.set(
        xlabel=f"timestep t (buckets of {width:g}; t = {timesteps} is pure noise)",
        ylabel="‖ε − ε̂‖² per pixel",
        title="evaluation loss by timestep (EMA weights, test set)",
    )
    right.set_yscale("log")
    ctx.savefig(fig, "loss_by_timestep.png")
