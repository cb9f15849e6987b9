"""``cifar_vision``: four CIFAR-10 models trained through layer 3's pipeline under ONE equal
training budget (``budget_seconds`` each), compared by parameters, FLOPs, steps, epochs, test
accuracy and measured training seconds; then Grad-CAM of a trained ResNet's last stage.

**Equal budget.** Each model first runs a short probe (``warmup_steps`` steps, then
``probe_steps`` timed ones) with its own recipe in each of ``precisions``; the faster precision
trains, and its step time t sets ``max_steps = ⌊budget_seconds / t⌋``, so that the one-cycle
schedule completes inside the budget. A fast model gets more steps (epochs) in the same
seconds, which is the comparison that matters when compute is what is scarce. The reported
``train_seconds`` is the trainer's measured training time (evaluation and checkpoints
excluded); ``timed_seconds`` is steps 2..n timed by a hook that synchronises the device first
(on CUDA the trainer's clock does not wait for queued kernels).

**Recipes.** ResNet, ConvNeXt and EfficientNet share the layer-4 recipe (crop + flip, label
smoothing 0.1, SGD-Nesterov with a one-cycle LR, flip test-time augmentation); the
airbench-style network (:mod:`layer4_architectures.vision.airbench`) gets airbench's: its own
batch size and learning rate, weight decay 0.0153 / 11.5 ≈ 1.33e-3 (airbench's decoupled decay
expressed for torch's SGD), label smoothing 0.2, 2-pixel translate + flip, flip + translate
test-time augmentation (in the model, so the task's flip TTA is off for it).

Every sub-run is a run folder inside this run's (``<model>/`` and ``probe/<model>-<precision>/``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.train import check_config, compose, load_model, run
from layer4_architectures.vision.flops import count_flops
from layer4_architectures.vision.gradcam import grad_cam

MODELS = {
    "airbench_cifar": "Airbench-style",
    "resnet20": "ResNet-20",
    "resnet18": "ResNet-18",
    "convnext_cifar": "ConvNeXt-small",
    "efficientnet_cifar": "EfficientNet-small",
}
GRADCAM_MODELS = ("resnet20", "resnet18")  # a last stage with a spatial layout (8x8, 4x4)
PRECISIONS = ("fp32", "bf16")
MIN_STEPS = 8  # the one-cycle schedule's warm-up (25% of the steps) must span a step


@deliverable(
    quick={
        "data_source": "real",
        "n_train": None,  # None: all 50k
        "n_test": None,  # None: all 10k
        "budget_seconds": 270.0,  # of training, the same for every model (4 models: ~23 min)
        "warmup_steps": 5,  # untimed probe steps (first-call overheads, the whitening set-up)
        "probe_steps": 10,  # timed probe steps: their mean step time sets max_steps
        "models": ["airbench_cifar", "resnet20", "convnext_cifar", "efficientnet_cifar"],
        "eval_batch_size": 500,
        "num_workers": 0,
        # probed, the faster trains: bf16 autocast halves ResNet-20's step here (0.17 vs 0.30 s)
        # but slows the depthwise convolutions of EfficientNet
        "precisions": ["bf16", "fp32"],
        "channels_last": False,  # no gain on this CPU (0.297 vs 0.304 s/step)
        "compile": False,
        # the layer-4 recipe (ResNet, ConvNeXt, EfficientNet)
        "batch_size": 128,
        "lr": 0.2,
        "label_smoothing": 0.1,
        "flip_tta": True,
        # airbench's recipe
        "airbench_widths": [32, 128, 128],  # the paper's 64/256/256 is 3.6x the FLOPs
        "airbench_batch_size": 256,
        "airbench_lr": 0.375,  # airbench's 11.5 per 1024 kilo-steps: 0.001465 per image
        "airbench_weight_decay": 1.33e-3,
        "airbench_label_smoothing": 0.2,
        "airbench_translate": 2,
        "airbench_tta": "flip_translate",
        "gradcam_model": "resnet20",
        "gradcam_images": 10,  # one test image per class
    },
    full={
        "budget_seconds": 120.0,
        "warmup_steps": 20,  # covers torch.compile's first calls
        "probe_steps": 30,
        "models": ["airbench_cifar", "resnet18", "convnext_cifar", "efficientnet_cifar"],
        "num_workers": 4,
        "channels_last": True,
        "compile": True,
        "batch_size": 512,
        "lr": 0.4,
        "airbench_widths": [64, 256, 256],
        "airbench_batch_size": 1024,
        "airbench_lr": 1.5,
        "gradcam_model": "resnet18",
    },
    headline=["test_accuracy", "train_seconds"],
)
def cifar_vision(ctx: RunContext) -> dict[str, Any]:
    """Probe, train and tabulate every model under one budget; Grad-CAM the ResNet."""
    cfg = ctx.config
    _check(cfg)
    rows = [_train_one(ctx, name) for name in ctx.progress(cfg["models"], desc="models")]
    ctx.write_json("table.json", rows)
    ctx.write_text("table.md", _table(rows, cfg["budget_seconds"]))
    _plot_table(ctx, rows)
    best = max(rows, key=lambda r: r["test_accuracy"])
    metrics: dict[str, Any] = {
        "test_accuracy": best["test_accuracy"],
        "train_seconds": best["train_seconds"],
        "best_model": best["model"],
        "budget_seconds": cfg["budget_seconds"],
    }
    for r in rows:
        for k in ("test_accuracy", "train_seconds", "params", "steps", "epochs"):
            metrics[f"{r['key']}_{k}"] = r[k]
        metrics[f"{r['key']}_mflops"] = r["mflops_per_image"]
    if cfg["gradcam_model"] in cfg["models"]:
        metrics["gradcam_mean_peak_in_centre"] = _gradcam_figure(ctx, cfg["gradcam_model"])
    return metrics


def _check(cfg: dict[str, Any]) -> None:
    """Refuse a config that cannot run, naming the key."""
    for name in cfg["models"]:
        if name not in MODELS:
            raise ValueError(f"models: unknown model {name!r}; expected some of {list(MODELS)}")
    if cfg["gradcam_model"] not in GRADCAM_MODELS:
        raise ValueError(
            f"gradcam_model={cfg['gradcam_model']!r}: expected one of {GRADCAM_MODELS}"
        )
    if not cfg["budget_seconds"] > 0:
        raise ValueError(f"budget_seconds={cfg['budget_seconds']}: expected > 0")
    unknown = set(cfg["precisions"]) - set(PRECISIONS)
    if unknown or not cfg["precisions"]:
        raise ValueError(f"precisions={cfg['precisions']}: expected some of {PRECISIONS}")
    if cfg["warmup_steps"] < 1 or cfg["probe_steps"] < 1:
        raise ValueError(
            f"warmup_steps={cfg['warmup_steps']}, probe_steps={cfg['probe_steps']}: "
            "expected >= 1 each"
        )
    if cfg["warmup_steps"] + cfg["probe_steps"] < MIN_STEPS:
        raise ValueError(
            f"warmup_steps + probe_steps = {cfg['warmup_steps'] + cfg['probe_steps']}: the "
            f"probe's one-cycle schedule needs >= {MIN_STEPS} steps"
        )


class StepClock:
    """A trainer hook: the wall-clock time at the end of the steps in ``marks``, taken after
    synchronising the device (CUDA kernels run asynchronously)."""

    def __init__(self, marks: tuple[int, ...]) -> None:
        self.marks, self.times = set(marks), {}

    def __call__(self, trainer: Any) -> None:
        if trainer.step in self.marks:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            self.times[trainer.step] = time.perf_counter()

    def seconds(self, first: int, last: int) -> float:
        """Seconds from the end of step ``first`` to the end of step ``last``."""
        return self.times[last] - self.times[first]


def _recipe(ctx: RunContext, name: str) -> list[str]:
    """The model's own training recipe, as overrides."""
    cfg = ctx.config
    if name == "airbench_cifar":
        return [
            f"model.widths=[{','.join(str(w) for w in cfg['airbench_widths'])}]",
            f"model.tta={cfg['airbench_tta']}",
            f"model.channels_last={cfg['channels_last']}",
            f"data.batch_size={cfg['airbench_batch_size']}",
            f"data.crop_padding={cfg['airbench_translate']}",
            f"optim.lr={cfg['airbench_lr']}",
            f"optim.optimizer.weight_decay={cfg['airbench_weight_decay']}",
            f"task.label_smoothing={cfg['airbench_label_smoothing']}",
            "task.flip_tta=false",
        ]
    out = [
        f"data.batch_size={cfg['batch_size']}",
        f"optim.lr={cfg['lr']}",
        f"task.label_smoothing={cfg['label_smoothing']}",
        f"task.flip_tta={cfg['flip_tta']}",
    ]
    if name.startswith("resnet"):
        out.append(f"model.channels_last={cfg['channels_last']}")
    return out


def _overrides(ctx: RunContext, name: str, steps: int, precision: str) -> list[str]:
    cfg = ctx.config
    out = [
        "experiment=cifar_resnet20",
        f"model={name}",
        f"seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.eval_batch_size={cfg['eval_batch_size']}",
        f"data.num_workers={cfg['num_workers']}",
        f"trainer.precision={precision}",
        f"trainer.compile={cfg['compile']}",
        f"trainer.max_steps={steps}",
        f"trainer.log_every={max(1, min(50, steps // 4))}",
        "logger=jsonl",
        *_recipe(ctx, name),
    ]
    for key in ("n_train", "n_test"):
        if cfg[key] is not None:
            out.append(f"data.{key}={cfg[key]}")
    return out


def _step_seconds(ctx: RunContext, name: str, precision: str) -> float:
    """The model's mean training-step time over ``probe_steps`` steps after ``warmup_steps``
    (a short run of its own, evaluated on one batch only)."""
    w, n = ctx.config["warmup_steps"], ctx.config["warmup_steps"] + ctx.config["probe_steps"]
    overrides = _overrides(ctx, name, n, precision)
    cfg = compose([*overrides, f"trainer.log_every={n}", "trainer.eval_batches=1"])
    clock = StepClock((w, n))
    folder = ctx.out_dir / "probe" / f"{name}-{precision}"
    run(cfg, folder, device=ctx.device, parent_id=ctx.run_id, hooks=[clock])
    return clock.seconds(w, n) / (n - w)


def _train_one(ctx: RunContext, name: str) -> dict[str, Any]:
    """Probe the step time in each precision, train the faster for the budget, count FLOPs;
    the table's row."""
    probes = {p: _step_seconds(ctx, name, p) for p in ctx.config["precisions"]}
    precision = min(probes, key=probes.__getitem__)
    step_seconds = probes[precision]
    steps = max(MIN_STEPS, int(ctx.config["budget_seconds"] / step_seconds))
    cfg = compose(_overrides(ctx, name, steps, precision))
    clock = StepClock((1, steps))
    m = run(cfg, ctx.out_dir / name, device=ctx.device, parent_id=ctx.run_id, hooks=[clock])
    model = load_model(ctx.out_dir / name, device="cpu")
    if hasattr(model, "tta"):
        model.tta = "none"  # FLOPs of one view, as for the others
    c, h, w = cfg.data.shape
    flops = count_flops(model, (1, c, h, w))
    plan = check_config(cfg)
    n_train = len(plan.data.setup(plan.seed).train)
    return {
        "key": name,
        "model": MODELS[name],
        "params": flops.parameters,
        "mflops_per_image": flops.total / 1e6,
        "batch_size": cfg.data.batch_size,
        "precision": precision,
        "probe_seconds": probes,
        "step_seconds": step_seconds,
        "steps": m["step"],
        "epochs": m["step"] * cfg.data.batch_size / n_train,
        "test_accuracy": m["test_accuracy"],
        "test_loss": m["test_loss"],
        "train_seconds": m["train_seconds"],
        "timed_seconds": clock.seconds(1, steps),
        "samples_per_sec": m["samples_per_sec"],
    }


def _table(rows: list[dict[str, Any]], budget: float) -> str:
    head = (
        f"Budget: {budget:.0f} s of training per model.\n\n"
        "| model | params | MFLOPs/image (fwd) | batch | precision | s/step (probe) | steps | "
        "epochs | test accuracy | train seconds |\n"
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['model']} | {r['params']:,} | {r['mflops_per_image']:.1f} | {r['batch_size']} | "
        f"{r['precision']} | {r['step_seconds']:.3f} | {r['steps']} | {r['epochs']:.1f} | "
        f"{r['test_accuracy']:.4f} | {r['train_seconds']:.0f} |\n"
        for r in rows
    )
    return head + body


def _plot_table(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in rows:
        xs = (r["params"] / 1e6, r["mflops_per_image"], r["epochs"])
        for ax, x in zip(axes, xs, strict=True):
            ax.scatter(x, r["test_accuracy"], s=40)
            ax.annotate(r["model"], (x, r["test_accuracy"]))
    for ax, xlabel in zip(
        axes,
        ("parameters (millions)", "forward MFLOPs per 32x32 image", "epochs trained in the budget"),
        strict=True,
    ):
        ax.margins(x=0.35, y=0.1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("CIFAR-10 test accuracy")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"CIFAR-10 under one budget of {ctx.config['budget_seconds']:.0f} s of training per "
        "model (see table.md)"
    )
    fig.tight_layout()
    ctx.savefig(fig, "accuracy_vs_size.png")


def _test_images(ctx: RunContext, k: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The first test image of each class in turn (``k`` in all; the file may be sorted by
    class), normalised; their labels; and the data module."""
    plan = check_config(compose(_overrides(ctx, ctx.config["gradcam_model"], 1, "fp32")))
    test = plan.data.setup(plan.seed).test
    labels = test.labels.numpy()
    rank = np.zeros_like(labels)  # how many earlier test images share each one's class
    for c in np.unique(labels):
        rank[labels == c] = np.arange((labels == c).sum())
    index = np.lexsort((labels, rank))[:k]  # class 0, 1, ..., then the second of each, ...
    x = torch.stack([test[int(i)][0] for i in index])  # (k, C, H, W)
    y = torch.stack([test[int(i)][1] for i in index])  # (k,)
    return x, y, plan.data


def _gradcam_figure(ctx: RunContext, name: str) -> float:
    """Grad-CAM of the ResNet's last stage on test images; the share of maps peaking in the
    central half of the image (a sanity figure: objects in CIFAR are mostly centred)."""
    model = load_model(ctx.out_dir / name, device="cpu")
    x, y, data = _test_images(ctx, ctx.config["gradcam_images"])
    cam = grad_cam(model, model.last_stage, x)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    images = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()  # (k, H, W, C)
    maps = cam.maps.numpy()
    ctx.save_arrays(
        "gradcam.safetensors",
        {"maps": maps, "labels": y.numpy(), "pred": cam.classes.numpy()},
    )
    plt = pyplot()
    k = len(images)
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.8), squeeze=False)
    for i in range(k):
        true, pred = data.classes[int(y[i])], data.classes[int(cam.classes[i])]
        axes[0, i].imshow(images[i])
        axes[0, i].set_title(f"true: {true}", fontsize=8)
        axes[1, i].imshow(images[i])
        axes[1, i].imshow(maps[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[1, i].set_title(f"pred: {pred}", fontsize=8, color="green" if true == pred else "red")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    h_last = model.features(x[:1]).shape[-1]
    fig.suptitle(
        f"Grad-CAM of {MODELS[name]}'s last stage ({h_last}x{h_last}, upsampled) on CIFAR-10 "
        "test images, for the predicted class"
    )
    fig.tight_layout()
    ctx.savefig(fig, "gradcam.png")
    h, w = maps.shape[1:]
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    central = [h // 4 <= r < 3 * h // 4 and w // 4 <= c < 3 * w // 4 for r, c in peaks]
    return float(np.mean(central))
