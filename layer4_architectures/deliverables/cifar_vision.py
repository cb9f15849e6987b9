"""``cifar_vision``: ResNet-20, a small ConvNeXt and a small EfficientNet trained on CIFAR-10
through layer 3's pipeline with one recipe (crop + flip, label smoothing 0.1, SGD-Nesterov with a
one-cycle LR, flip test-time augmentation), compared by parameters, FLOPs, test accuracy and
training seconds; then Grad-CAM of the trained ResNet-20's last stage on test images.

The best configuration (``best``: ResNet-20 in the quick preset, ResNet-18 in the full one) gets
``best_steps``; the other models get ``other_steps`` each (a shorter budget, stated in the
table). Each sub-run is a run folder of its own inside this run's
(``runs/.../cifar_vision/<timestamp>/<model>/``) with its checkpoint and metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.train import check_config, compose, load_model, run
from layer4_architectures.vision.flops import count_flops
from layer4_architectures.vision.gradcam import grad_cam

MODELS = {
    "resnet20": "ResNet-20",
    "resnet18": "ResNet-18",
    "convnext_cifar": "ConvNeXt-small",
    "efficientnet_cifar": "EfficientNet-small",
}


@deliverable(
    quick={
        "data_source": "real",
        "n_train": None,  # None: all 50k
        "n_test": None,  # None: all 10k
        "batch_size": 128,
        "eval_batch_size": 500,
        "num_workers": 0,
        "lr": 0.2,
        "label_smoothing": 0.1,
        "flip_tta": True,
        "precision": "bf16",  # autocast: 0.17 s/step vs 0.30 fp32 for ResNet-20 on this CPU
        "channels_last": False,  # no gain on this CPU (0.297 vs 0.304 s/step)
        "best_steps": 3900,  # 10 epochs of 390 steps: about 12 min of training here
        "other_steps": 780,  # 2 epochs each for ConvNeXt and EfficientNet
        "best": "resnet20",
        "models": ["resnet20", "convnext_cifar", "efficientnet_cifar"],
        "gradcam_images": 10,  # one test image per class
    },
    full={
        "best": "resnet18",
        "models": ["resnet18", "convnext_cifar", "efficientnet_cifar"],
        "num_workers": 4,
        "channels_last": True,
        "best_steps": 15600,  # 40 epochs of 390 steps
        "other_steps": 15600,
    },
    headline=["test_accuracy", "train_seconds"],
)
def cifar_vision(ctx: RunContext) -> dict[str, Any]:
    """Train the three models, tabulate them, Grad-CAM the ResNet-20."""
    cfg = ctx.config
    for name in [*cfg["models"], cfg["best"]]:
        if name not in MODELS:
            raise ValueError(f"models: unknown model {name!r}; expected some of {list(MODELS)}")
    rows = [_train_one(ctx, name) for name in cfg["models"]]
    ctx.write_json("table.json", rows)
    ctx.write_text("table.md", _table(rows))
    _plot_table(ctx, rows)
    best = max(rows, key=lambda r: r["test_accuracy"])
    metrics: dict[str, Any] = {
        "test_accuracy": best["test_accuracy"],
        "train_seconds": best["train_seconds"],
        "best_model": best["model"],
    }
    for r in rows:
        metrics.update({f"{r['key']}_{k}": r[k] for k in ("test_accuracy", "train_seconds")})
        metrics[f"{r['key']}_params"] = r["params"]
        metrics[f"{r['key']}_mflops"] = r["mflops_per_image"]
    if cfg["best"] in cfg["models"]:
        metrics["gradcam_mean_peak_in_centre"] = _gradcam_figure(ctx, cfg["best"])
    return metrics


def _overrides(ctx: RunContext, name: str, steps: int) -> list[str]:
    cfg = ctx.config
    out = [
        "experiment=cifar_resnet20",
        f"model={name}",
        f"seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['batch_size']}",
        f"data.eval_batch_size={cfg['eval_batch_size']}",
        f"data.num_workers={cfg['num_workers']}",
        f"optim.lr={cfg['lr']}",
        f"task.label_smoothing={cfg['label_smoothing']}",
        f"task.flip_tta={cfg['flip_tta']}",
        f"trainer.precision={cfg['precision']}",
        f"trainer.max_steps={steps}",
        f"trainer.log_every={max(1, min(50, steps // 4))}",
        "logger=jsonl",
    ]
    for key in ("n_train", "n_test"):
        if cfg[key] is not None:
            out.append(f"data.{key}={cfg[key]}")
    if name.startswith("resnet"):
        out.append(f"model.channels_last={cfg['channels_last']}")
    return out


def _train_one(ctx: RunContext, name: str) -> dict[str, Any]:
    steps = ctx.config["best_steps"] if name == ctx.config["best"] else ctx.config["other_steps"]
    cfg = compose(_overrides(ctx, name, steps))
    m = run(cfg, ctx.out_dir / name, device=ctx.device, parent_id=ctx.run_id)
    model = load_model(ctx.out_dir / name, device="cpu")
    c, h, w = cfg.data.shape
    flops = count_flops(model, (1, c, h, w))
    return {
        "key": name,
        "model": MODELS[name],
        "params": flops.parameters,
        "mflops_per_image": flops.total / 1e6,
        "steps": m["step"],
        "test_accuracy": m["test_accuracy"],
        "test_loss": m["test_loss"],
        "train_seconds": m["train_seconds"],
        "samples_per_sec": m["samples_per_sec"],
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = "| model | params | MFLOPs/image (fwd) | steps | test accuracy | train seconds |\n"
    head += "|---|---:|---:|---:|---:|---:|\n"
    body = "".join(
        f"| {r['model']} | {r['params']:,} | {r['mflops_per_image']:.1f} | {r['steps']} | "
        f"{r['test_accuracy']:.4f} | {r['train_seconds']:.0f} |\n"
        for r in rows
    )
    return head + body


def _plot_table(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        axes[0].scatter(r["params"] / 1e6, r["test_accuracy"], s=40)
        label = f"{r['model']} ({r['steps']} steps)"
        axes[0].annotate(label, (r["params"] / 1e6, r["test_accuracy"]))
        axes[1].scatter(r["mflops_per_image"], r["test_accuracy"], s=40)
        axes[1].annotate(r["model"], (r["mflops_per_image"], r["test_accuracy"]))
    for ax in axes:
        ax.margins(x=0.35, y=0.1)
    axes[0].set_xlabel("parameters (millions)")
    axes[1].set_xlabel("forward MFLOPs per 32x32 image")
    for ax in axes:
        ax.set_ylabel("CIFAR-10 test accuracy")
        ax.grid(alpha=0.3)
    fig.suptitle("CIFAR-10: accuracy vs size (each model's own step budget, see table.md)")
    fig.tight_layout()
    ctx.savefig(fig, "accuracy_vs_size.png")


def _test_images(ctx: RunContext, k: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The first test image of each class in turn (``k`` in all; the file may be sorted by
    class), normalised; their labels; and the data module."""
    plan = check_config(compose(_overrides(ctx, ctx.config["best"], 1)))
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
    """Grad-CAM of the best model's last stage on test images; the share of maps peaking in the
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
