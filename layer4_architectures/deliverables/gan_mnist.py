"""``gan_mnist``: DCGAN on MNIST with the non-saturating loss, and a failure mode made visible.

Two runs, each a sub-run folder with a self-describing checkpoint (the generator; load it with
``layer3_framework.train.load_model``): ``gan/``, the balanced recipe (Adam 2e-4, β₁ = 0.5, one
D step per G step), and ``strong_d/``, a too-strong discriminator (D's learning rate ×10 and
several D steps per G step). Both are built from the Hydra configs (``model=dcgan data=mnist_pm1
task=gan``, checked whole by layer 3's schema) and trained by layer 3's Trainer with two
optimizers, ``d`` and ``g``, in the order the task names (layer 3's ``run`` builds one optimizer,
so this deliverable builds the two). Artifacts: sample grids over training (a fixed z), the
loss and D(x)/D(G(z)) curves of both runs, the final samples scored by the yardstick beside the
real-vs-real floor, and the class histograms of both runs' samples (collapse shows as a peaked
histogram, a low class entropy).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer0_math.files import atomic_file
from layer0_math.lab import RunContext, deliverable, open_run, pyplot
from layer3_framework.loggers import build_logger, read_jsonl
from layer3_framework.repro import seed_everything
from layer3_framework.train import build_model, check_config, compose
from layer3_framework.trainer import Trainer
from layer4_architectures.generative.gan import Generator, SampleGrid
from layer4_architectures.generative.yardstick import Yardstick, scored_title, show_grid

SAMPLES_FILE = "samples_gan.npy"


@deliverable(
    quick={
        "steps": 3000,
        "batch_size": 64,
        "lr_g": 2.0e-4,
        "lr_d": 2.0e-4,
        "beta1": 0.5,
        "width": 32,
        "strong_d_run_steps": 400,
        "strong_d_lr_factor": 10.0,
        "strong_d_steps": 5,
        "grids": 6,
        "n_samples": 1000,
        "data_source": "real",
        "n_train": None,
    },
    full={"steps": 20000, "width": 64, "strong_d_run_steps": 5000, "n_samples": 10000},
    headline=["fid", "confident_share", "class_entropy"],
)
def gan_mnist(ctx: RunContext) -> dict[str, Any]:
    """Train the balanced DCGAN and the too-strong-D one; score, plot."""
    cfg = ctx.config
    stick = Yardstick.from_runs(device=ctx.device)  # first: a missing classifier fails fast
    steps = cfg["steps"]
    main, grids = _train(ctx, "gan", steps, cfg["lr_d"], 1)
    lr_strong = cfg["lr_d"] * cfg["strong_d_lr_factor"]
    strong, _ = _train(ctx, "strong_d", cfg["strong_d_run_steps"], lr_strong, cfg["strong_d_steps"])
    floor = stick.floor(cfg["n_samples"])
    samples, sample_seconds = _samples(main["generator"], cfg["n_samples"], ctx.seed)
    with atomic_file(ctx.path(SAMPLES_FILE)) as f:  # (N, 1, 28, 28) float32 in [0, 1]
        np.save(f, samples.numpy())
    strong_samples, _ = _samples(strong["generator"], cfg["n_samples"], ctx.seed)
    score, strong_score = stick.score(samples), stick.score(strong_samples)
    ctx.write_json("yardstick.json", {"gan": score, "strong_d": strong_score, "floor": floor})
    _plot_grids(ctx, grids)
    _plot_samples(ctx, samples[:100], score, floor)
    _plot_curves(ctx)
    _plot_histograms(ctx, score, strong_score, strong_samples[:50])
    return {
        **stick.headline(score, floor),
        "strong_d_fid": strong_score["fid"],
        "strong_d_confident_share": strong_score["confident_share"],
        "strong_d_class_entropy": strong_score["class_entropy"],
        "strong_d_final_d_fake": strong["d_fake"],
        "final_d_real": main["d_real"],
        "final_d_fake": main["d_fake"],
        "parameters": sum(p.numel() for p in main["generator"].parameters()),
        "discriminator_parameters": main["d_parameters"],
        "steps": steps,
        "train_seconds": main["train_seconds"],
        "sample_seconds_per_1000": sample_seconds,
        "samples_file": SAMPLES_FILE,
    }


def _overrides(ctx: RunContext, steps: int, d_steps: int) -> list[str]:
    cfg = ctx.config
    overrides = [
        "model=dcgan",
        "data=mnist_pm1",
        "task=gan",
        f"seed={ctx.seed}",
        f"model.width={cfg['width']}",
        f"task.d_width={cfg['width']}",
        f"task.d_steps={d_steps}",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['batch_size']}",
        f"trainer.max_steps={steps}",
        f"trainer.log_every={max(1, steps // 100)}",
        "trainer.eval_batches=2",
        "logger=jsonl",
    ]
    if cfg["n_train"] is not None:
        overrides += [f"data.n_train={cfg['n_train']}", "data.n_test=256"]
    return overrides


def _train(
    ctx: RunContext, folder: str, steps: int, lr_d: float, d_steps: int
) -> tuple[dict[str, Any], list[tuple[int, torch.Tensor]]]:
    """One GAN sub-run: the checked config, then data, generator, task, two optimizers, fit."""
    cfg = ctx.config
    plan = check_config(compose(_overrides(ctx, steps, d_steps)))
    with open_run(
        ctx.layer,
        ctx.deliverable,
        preset="hydra",
        seed=plan.seed,
        config=plan.config,
        run_dir=ctx.out_dir / folder,
        parent_id=ctx.run_id,
        device=ctx.device,
        kind="train",
    ) as sub:
        seed_everything(plan.seed)
        data = plan.data
        data.setup(plan.seed)
        generator, spec = build_model(plan.config["model"], data)
        task = _task(plan.config["task"], generator)
        groups = task.optimizer_groups()
        betas = (cfg["beta1"], 0.999)
        optimizers = {
            "d": torch.optim.Adam(groups["d"], lr=lr_d, betas=betas),
            "g": torch.optim.Adam(groups["g"], lr=cfg["lr_g"], betas=betas),
        }
        hook = SampleGrid(generator, every=max(1, steps // cfg["grids"]), seed=ctx.seed)
        with build_logger(plan.logger, sub.out_dir, name=folder, config=plan.config) as logger:
            trainer = Trainer(
                task,
                optimizers,
                data.train_loader(plan.seed),
                plan.trainer,
                device=ctx.device or "cpu",
                eval_loader=data.eval_loader(plan.seed),
                logger=logger,
                ckpt_dir=sub.out_dir / "checkpoints",
                run_config=plan.config,
                model_spec=spec,
                hooks=[hook],
            )
            history = trainer.fit()
        metrics = _metrics(trainer, history)
        sub.record_metrics(metrics)
    metrics["d_parameters"] = sum(p.numel() for p in groups["d"])
    return {**metrics, "generator": task.generator}, hook.grids


def _task(node: dict[str, Any], generator: Generator) -> Any:
    from hydra.utils import instantiate

    return instantiate(node, _convert_="all")(generator)


def _metrics(trainer: Trainer, history: dict[str, Any]) -> dict[str, Any]:
    return {
        "step": trainer.step,
        "d_loss": history["train/loss/d"],
        "g_loss": history["train/loss/g"],
        "d_real": history["train/d_real"],
        "d_fake": history["train/d_fake"],
        "test_d_loss": history["eval/d_loss"],
        "test_g_loss": history["eval/g_loss"],
        "train_seconds": history["train_seconds"],
        "checkpoint": str(trainer.last_good_checkpoint),
    }


def _samples(generator: Generator, n: int, seed: int) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    samples = generator.sample(n, torch.Generator().manual_seed(seed))
    return samples, (time.perf_counter() - start) * 1000 / n


def _plot_grids(ctx: RunContext, grids: list[tuple[int, torch.Tensor]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 3), squeeze=False)
    for ax, (step, images) in zip(axes[0], grids, strict=True):
        show_grid(ax, images[:36], 6, f"step {step}")
    fig.suptitle("DCGAN samples over training (the same z throughout)")
    ctx.savefig(fig, "samples_over_training.png")


def _plot_samples(ctx: RunContext, samples: torch.Tensor, score: dict, floor: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 6.6))
    show_grid(ax, samples, 10, scored_title("DCGAN samples", score, floor))
    ctx.savefig(fig, "samples.png")


def _curves(path: Path) -> dict[str, list[float]]:
    records = [r for r in read_jsonl(path) if "train/loss/d" in r]
    keys = ("step", "train/loss/d", "train/loss/g", "train/d_real", "train/d_fake")
    return {k: [r.get(k, float("nan")) for r in records] for k in keys}  # G may skip a window


def _plot_curves(ctx: RunContext) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    for col, (folder, title) in enumerate(
        [
            ("gan", "balanced (1 D step per G step)"),
            ("strong_d", "too-strong D (lr ×10, k D steps)"),
        ]
    ):
        c = _curves(ctx.out_dir / folder / "metrics.jsonl")
        axes[0, col].plot(c["step"], c["train/loss/d"], label="D loss")
        axes[0, col].plot(c["step"], c["train/loss/g"], label="G loss −log D(G(z))")
        axes[0, col].set(title=title, ylabel="loss (nats)")
        axes[0, col].legend()
        axes[1, col].plot(c["step"], c["train/d_real"], label="D(x), real")
        axes[1, col].plot(c["step"], c["train/d_fake"], label="D(G(z)), fake")
        axes[1, col].set(xlabel="step", ylabel="mean D output", ylim=(0, 1))
        axes[1, col].legend()
    ctx.savefig(fig, "loss_curves.png")


def _plot_histograms(
    ctx: RunContext, score: dict, strong: dict, strong_samples: torch.Tensor
) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, s, name in ((axes[0], score, "balanced"), (axes[1], strong, "too-strong D")):
        ax.bar(range(10), s["class_histogram"], color="C0" if name == "balanced" else "C3")
        ax.set(
            xticks=range(10),
            xlabel="predicted digit",
            ylabel=f"samples (of {s['n']})",
            title=f"{name}: class entropy {s['class_entropy']:.3f}, FID {s['fid']:.1f}",
        )
    show_grid(axes[2], strong_samples, 10, "too-strong D: samples")
    ctx.savefig(fig, "class_histograms.png")
