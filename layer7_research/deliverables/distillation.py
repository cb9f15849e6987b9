"""``distillation``: a CIFAR-10 student ~10x smaller than layer 4's ResNet-20, trained on hard
labels and distilled from the ResNet (Hinton et al. 2015) over T ∈ {1, 2, 4, 8} and α ∈ {0.5, 0.9}.

The student is layer 3's :class:`~layer3_framework.ports.CifarCNN` (widths 16/32/48: three
conv-BN-ReLU-maxpool stages and a linear head, 26.7k parameters against the ResNet's 270k).
Every student run uses the same seed (same initial weights), the same batches and augmentation
(crop + flip, a function of seed, epoch and index), the same optimiser and schedule (SGD-Nesterov,
one-cycle LR) and the same number of steps, through layer 3's trainer; only the loss differs:
cross-entropy on the labels (hard), or L = α T² KL(q ‖ p) + (1 − α) CE with the teacher's
logits computed inside the task on the same augmented batch
(:class:`~layer7_research.efficient.distill.DistillationTask`, teacher frozen in eval mode). As
all students see the same batches, the teacher's logits are memoised across the sweep
(:class:`~layer7_research.efficient.distill.TeacherCache`): one teacher pass per distinct batch.

Reported: test accuracy of each run on the CIFAR-10 test set, and the share of the teacher–student
gap that distillation closes, (acc_KD − acc_hard) / (acc_teacher − acc_hard). Images are
normalised with the mean and std of the teacher's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework import Trainer, TrainerConfig, resolve_device, seed_everything
from layer3_framework.ports import CifarCNN
from layer7_research.artifacts import load_base, preprocessing, source_dir
from layer7_research.efficient.distill import DistillationTask, TeacherCache
from layer7_research.efficient.ptq import image_data, mean_metrics


@deliverable(
    quick={
        "temperatures": [1.0, 2.0, 4.0, 8.0],
        "alphas": [0.5, 0.9],
        "student_widths": [16, 32, 48],
        "steps": 200,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "n_train": None,  # None: all 50,000
        "n_test": None,  # None: all 10,000
        "eval_batch_size": 500,
    },
    full={"steps": 6000},
    headline=["hard_accuracy", "best_kd_accuracy", "best_gap_closed", "teacher_accuracy"],
)
def distillation(ctx: RunContext) -> dict[str, Any]:
    """Teacher accuracy, the hard-label student, then one distilled student per (T, α)."""
    cfg = ctx.config
    _check(cfg)
    device = resolve_device(ctx.device)
    teacher = load_base("resnet", device=device)
    data = image_data(
        preprocessing(teacher), "cifar10", augment=True, crop_padding=4, flip=True,
        batch_size=cfg["batch_size"], eval_batch_size=cfg["eval_batch_size"],
        n_train=cfg["n_train"], n_test=cfg["n_test"],
    )  # fmt: skip
    data.setup(ctx.seed)
    teacher_acc = mean_metrics(teacher, data.eval_loader(ctx.seed), device)["accuracy"]
    hard = _train(ctx, data, device, lambda m: m)  # a plain model: layer 3's Classification
    rows = []
    grid = [(t, a) for a in cfg["alphas"] for t in cfg["temperatures"]]
    cache = TeacherCache(teacher)  # same seed, same batches: the teacher runs once per batch
    for t, a in ctx.progress(grid, desc="distilled students"):
        acc = _train(
            ctx, data, device, lambda m, t=t, a=a: DistillationTask(m, teacher, t, a, cache)
        )
        gap = (acc - hard) / (teacher_acc - hard) if teacher_acc != hard else float("nan")
        rows.append({"temperature": t, "alpha": a, "accuracy": acc, "gap_closed": gap})
    params = {
        "student_params": _params(_student(cfg)),
        "teacher_params": _params(teacher),
    }
    params["teacher_forward_batches"] = cache.misses  # the teacher ran once per distinct batch
    ctx.write_json("table.json", {"teacher": teacher_acc, "hard": hard, "rows": rows, **params})
    ctx.write_text("table.md", _table(ctx, teacher_acc, hard, rows, params, len(data.bundle.test)))
    _plot(ctx, teacher_acc, hard, rows)
    return {
        **_metrics(teacher_acc, hard, rows, params),
        "teacher_checkpoint": str(source_dir("resnet")),
    }


def _check(cfg: dict[str, Any]) -> None:
    if any(not t > 0 for t in cfg["temperatures"]) or not cfg["temperatures"]:
        raise ValueError(f"temperatures={cfg['temperatures']}: expected a list of values > 0")
    if any(not 0 < a <= 1 for a in cfg["alphas"]) or not cfg["alphas"]:
        raise ValueError(f"alphas={cfg['alphas']}: expected a list of values in (0, 1]")
    if cfg["steps"] < 8:
        raise ValueError(f"steps={cfg['steps']}: expected >= 8 (the one-cycle warm-up)")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _student(cfg: dict[str, Any]) -> nn.Module:
    return CifarCNN(3, cfg["student_widths"], 10, 32)


def _train(
    ctx: RunContext, data: Any, device: torch.device, make_task: Callable[[nn.Module], nn.Module]
) -> float:
    """Train one fresh student as ``make_task(student)`` for ``steps``; its test accuracy."""
    cfg = ctx.config
    seed_everything(ctx.seed)  # the same initial weights for every student
    student = _student(cfg)
    task = make_task(student)
    opt = torch.optim.SGD(
        student.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True,
        weight_decay=cfg["weight_decay"],
    )  # fmt: skip
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg["lr"], total_steps=cfg["steps"])
    trainer = Trainer(
        task, opt, data.train_loader(ctx.seed),
        TrainerConfig(max_steps=cfg["steps"], log_every=max(1, cfg["steps"] // 5)),
        device=device, scheduler=sched, eval_loader=data.eval_loader(ctx.seed),
    )  # fmt: skip
    return trainer.fit()["eval/accuracy"]


def _table(
    ctx: RunContext,
    teacher: float,
    hard: float,
    rows: list[dict[str, Any]],
    params: dict[str, int],
    n_test: int,
) -> str:
    cfg = ctx.config
    head = (
        f"Student CifarCNN {cfg['student_widths']} ({params['student_params']:,} parameters) vs "
        f"teacher ResNet-20 ({params['teacher_params']:,}); every student {cfg['steps']} steps "
        f"of batch {cfg['batch_size']} (crop + flip), SGD-Nesterov one-cycle lr {cfg['lr']}, "
        f"seed {ctx.seed}; accuracy on {n_test} CIFAR-10 test images.\n\n"
        f"Teacher: {teacher:.4f}. Student on hard labels: {hard:.4f}.\n\n"
        "| T | α | test accuracy | change vs hard | gap closed |\n|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['temperature']:g} | {r['alpha']:g} | {r['accuracy']:.4f} | "
        f"{r['accuracy'] - hard:+.4f} | {r['gap_closed']:+.2f} |\n"
        for r in rows
    )
    return head + body


def _plot(ctx: RunContext, teacher: float, hard: float, rows: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a in ctx.config["alphas"]:
        sub = [r for r in rows if r["alpha"] == a]
        ax.plot(
            [r["temperature"] for r in sub],
            [r["accuracy"] for r in sub],
            "o-",
            label=f"KD, α = {a:g}",
        )
    ax.axhline(hard, color="k", ls="--", label=f"hard labels ({hard:.3f})")
    ax.axhline(teacher, color="tab:green", ls=":", label=f"teacher ResNet-20 ({teacher:.3f})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("temperature T")
    ax.set_ylabel("CIFAR-10 test accuracy")
    ax.set_title(f"Distilling ResNet-20 into a 10x smaller CNN ({ctx.config['steps']} steps each)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    ctx.savefig(fig, "accuracy_vs_temperature.png")


def _metrics(
    teacher: float, hard: float, rows: list[dict[str, Any]], params: dict[str, int]
) -> dict[str, Any]:
    best = max(rows, key=lambda r: r["accuracy"])
    out: dict[str, Any] = {
        "teacher_accuracy": teacher,
        "hard_accuracy": hard,
        "best_kd_accuracy": best["accuracy"],
        "best_gap_closed": best["gap_closed"],
        "best_temperature": best["temperature"],
        "best_alpha": best["alpha"],
        **params,
    }
    for r in rows:
        key = f"kd_T{r['temperature']:g}_a{r['alpha']:g}"
        out[f"{key}_accuracy"], out[f"{key}_gap_closed"] = r["accuracy"], r["gap_closed"]
    return out
