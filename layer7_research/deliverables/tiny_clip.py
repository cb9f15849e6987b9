"""``tiny_clip``: a contrastive image–text model trained on CIFAR-10 and class captions, then
used as a zero-shot classifier from text prompts alone.

Each training image is paired with a caption, one of :data:`~layer7_research.multimodal.clip.
TRAIN_TEMPLATES` filled with its class name (layer 0's CIFAR-10 names); the symmetric InfoNCE
loss with a learned temperature (targets spread over same-class captions) trains a CNN image
encoder and a bag-of-words text encoder through layer 3's trainer. No classifier head is ever
trained: the test set is classified by the nearest class prompt, with the *held-out* templates
(each alone, and their ensemble: mean embedding over templates), and with the training
templates' ensemble for comparison. Plots: the 10×10 image–class similarity matrix (mean cosine
over each class's test images against each class prompt), the temperature and loss over
training, and zero-shot accuracy per template. The trained model is saved as a self-describing
checkpoint (vocabulary, templates, class names and normalisation in its preprocessing).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layer0_math.datasets import CIFAR10_CLASSES, load_cifar10
from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.data import ImageDataset, ImageTransform, build_loader
from layer3_framework.device import resolve_device
from layer3_framework.schedules import warmup_cosine
from layer3_framework.trainer import Trainer, TrainerConfig
from layer4_architectures.sequence.gpt import decay_groups
from layer7_research.multimodal.clip import (
    CLIP,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    CLIPTask,
    WordVocab,
    caption_table,
    class_embeddings,
    zero_shot_predict,
)

CAPTION_LEN = 12


@deliverable(
    quick={
        "steps": 500,
        "batch_size": 128,
        "lr": 2e-3,
        "weight_decay": 0.05,
        "widths": [32, 64, 128],
        "embed_dim": 64,
        "text_width": 64,
        "eval_every": 125,
        "eval_batches": 4,
        "eval_batch_size": 500,
        "precision": "fp32",
    },
    full={
        "steps": 10000,
        "batch_size": 512,
        "widths": [64, 128, 256],
        "embed_dim": 128,
        "text_width": 128,
        "eval_every": 1000,
        "precision": "bf16",
    },  # fmt: skip
    headline=["zero_shot_heldout_ensemble", "zero_shot_train_ensemble", "final_temperature"],
)
def tiny_clip(ctx: RunContext) -> dict[str, Any]:
    """Contrastive training on CIFAR-10 captions; zero-shot test accuracy from prompts only."""
    cfg = ctx.config
    device = resolve_device(ctx.device)
    x_train, y_train = load_cifar10("train")
    x_test, y_test = load_cifar10("test")
    mean, std = _channel_stats(x_train)
    transform = ImageTransform(mean, std, crop_padding=4, flip=True)
    vocab = WordVocab.fit([t.format(c) for t in TRAIN_TEMPLATES for c in CIFAR10_CLASSES])
    model_kwargs = {"vocab_size": len(vocab), "embed_dim": cfg["embed_dim"],
                    "text_width": cfg["text_width"], "widths": list(cfg["widths"])}  # fmt: skip
    torch.manual_seed(ctx.seed)
    model = CLIP(**model_kwargs)
    task = CLIPTask(
        model, _table(vocab, TRAIN_TEMPLATES), _table(vocab, HELDOUT_TEMPLATES), ctx.seed
    )
    train = ImageDataset(x_train, y_train, transform, augment=True, seed=ctx.seed)
    test = ImageDataset(x_test, y_test, transform)
    trainer = _trainer(ctx, task, train, test, device, model_kwargs, vocab, (mean, std))
    history = trainer.fit()
    scores = _zero_shot(ctx, model, vocab, test, device)
    _plot_training(ctx, trainer.history)
    metrics = {
        **scores,
        "final_temperature": history["train/temperature"],
        "final_logit_scale": 1.0 / history["train/temperature"],
        "final_train_loss": history["train/loss"],
        "train_seconds": history["train_seconds"],
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(vocab),
        "train_templates": list(TRAIN_TEMPLATES),
        "heldout_templates": list(HELDOUT_TEMPLATES),
        "chance": 1 / len(CIFAR10_CLASSES),
    }
    ctx.write_text("table.md", _table_md(metrics))
    return metrics


def _channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on [0, 1]."""
    v = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1) / 255.0  # (C, N·H·W)
    return v.mean(axis=1).tolist(), v.std(axis=1).tolist()


def _table(vocab: WordVocab, templates: tuple[str, ...]) -> torch.Tensor:
    return caption_table(vocab, CIFAR10_CLASSES, templates, CAPTION_LEN)  # (C, M, L)


def _trainer(
    ctx: RunContext,
    task: CLIPTask,
    train: ImageDataset,
    test: ImageDataset,
    device: torch.device,
    model_kwargs: dict[str, Any],
    vocab: WordVocab,
    stats: tuple[list[float], list[float]],
) -> Trainer:
    """Layer 3's trainer: AdamW (no decay on t, biases, norms), warm-up + cosine, checkpoint."""
    cfg = ctx.config
    optimizer = torch.optim.AdamW(decay_groups(task.model, cfg["weight_decay"]), lr=cfg["lr"])
    spec = {
        "target": "layer7_research.multimodal.clip.CLIP",
        "kwargs": model_kwargs,
        "preprocessing": {"kind": "image_text", "vocab": vocab.words, "caption_len": CAPTION_LEN,
                          "class_names": list(CIFAR10_CLASSES), "mean": stats[0], "std": stats[1],
                          "train_templates": list(TRAIN_TEMPLATES),
                          "heldout_templates": list(HELDOUT_TEMPLATES)},
    }  # fmt: skip
    return Trainer(
        task,
        optimizer,
        build_loader(train, cfg["batch_size"], shuffle=True, seed=ctx.seed, drop_last=True),
        TrainerConfig(
            max_steps=cfg["steps"],
            log_every=max(1, cfg["steps"] // 40),
            eval_every=cfg["eval_every"],
            eval_batches=cfg["eval_batches"],
            precision=cfg["precision"],
            clip_grad_norm=1.0,
        ),  # fmt: skip
        device=device,
        scheduler=warmup_cosine(optimizer, cfg["steps"], 0.05),
        eval_loader=build_loader(test, cfg["eval_batch_size"], shuffle=True, seed=ctx.seed),
        ckpt_dir=ctx.out_dir / "checkpoints",
        run_config=dict(cfg),
        model_spec=spec,
    )


@torch.no_grad()
def _zero_shot(
    ctx: RunContext, model: CLIP, vocab: WordVocab, test: ImageDataset, device: torch.device
) -> dict[str, Any]:
    """Zero-shot test accuracy per template and per ensemble; the similarity matrix plot."""
    model.eval()
    loader = build_loader(test, ctx.config["eval_batch_size"], shuffle=False)
    images = torch.cat([model.encode_image(x.to(device)).float() for x, _ in
                        ctx.progress(loader, desc="embed test")])  # fmt: skip
    labels = test.labels.to(device)

    def accuracy(templates: tuple[str, ...]) -> float:
        classes = class_embeddings(model, _table(vocab, templates).to(device)).float()
        return float((zero_shot_predict(images, classes) == labels).double().mean())

    per_template = {t: accuracy((t,)) for t in (*HELDOUT_TEMPLATES, *TRAIN_TEMPLATES)}
    heldout = class_embeddings(model, _table(vocab, HELDOUT_TEMPLATES).to(device)).float()
    sim = _similarity(images, labels, heldout)
    _plot_similarity(ctx, sim)
    _plot_templates(ctx, per_template)
    pred = zero_shot_predict(images, heldout)
    per_class = {c: float((pred[labels == i] == i).double().mean()) for i, c in
                 enumerate(CIFAR10_CLASSES)}  # fmt: skip
    return {
        "zero_shot_heldout_ensemble": accuracy(HELDOUT_TEMPLATES),
        "zero_shot_train_ensemble": accuracy(TRAIN_TEMPLATES),
        "zero_shot_all_ensemble": accuracy((*HELDOUT_TEMPLATES, *TRAIN_TEMPLATES)),
        "zero_shot_heldout_mean_single": float(
            np.mean([per_template[t] for t in HELDOUT_TEMPLATES])
        ),
        "zero_shot_per_template": per_template,
        "zero_shot_per_class_heldout": per_class,
        "similarity_matrix": sim.tolist(),
        "similarity_diagonal_margin": float(
            np.diag(sim).mean() - sim[~np.eye(10, dtype=bool)].mean()
        ),
    }


def _similarity(images: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
    """S[c, c'] = mean over test images of class c of cos(image, prompt embedding of c')."""
    cos = images @ classes.T  # (N, C)
    return np.stack([cos[labels == c].mean(dim=0).cpu().numpy() for c in range(len(classes))])


# ----------------------------------------------------------------------------- plots, table


def _plot_similarity(ctx: RunContext, sim: np.ndarray) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(sim, cmap="viridis")
    for i in range(len(sim)):
        for j in range(len(sim)):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if sim[i, j] > sim.mean() else "white")  # fmt: skip
    names = list(CIFAR10_CLASSES)
    ax.set_xticks(range(10), names, rotation=45, ha="right")
    ax.set_yticks(range(10), names)
    ax.set_xlabel("class prompt (held-out template ensemble)")
    ax.set_ylabel("test images of class")
    ax.set_title("Tiny CLIP: mean image–text cosine similarity")
    fig.colorbar(im, ax=ax, label="mean cosine similarity")
    ctx.savefig(fig, "similarity_matrix.png")


def _plot_training(ctx: RunContext, history: list[dict[str, float]]) -> None:
    plt = pyplot()
    rows = [r for r in history if "train/temperature" in r]
    evals = [r for r in history if "eval/zero_shot_accuracy" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in rows]
    a.plot(steps, [r["train/temperature"] for r in rows], color="C0", label="temperature 1/exp(t)")
    a.axhline(0.07, color="grey", ls="--", lw=1, label="initial 0.07")
    a.axhline(0.01, color="C3", ls=":", lw=1, label="clamp (logit scale 100)")
    a.set_xlabel("optimizer step")
    a.set_ylabel("temperature")
    a.set_title("Learned temperature")
    a.legend()
    b.plot(steps, [r["train/loss"] for r in rows], color="C1", label="train InfoNCE loss")
    b.set_xlabel("optimizer step")
    b.set_ylabel("loss (nats)")
    b.set_title("Loss and zero-shot accuracy (held-out prompts)")
    b2 = b.twinx()
    b2.plot([r["step"] for r in evals], [r["eval/zero_shot_accuracy"] for r in evals], "o-",
            color="C2", label="zero-shot accuracy (test subset)")  # fmt: skip
    b2.set_ylabel("zero-shot accuracy")
    b2.set_ylim(0, 1)
    lines = b.get_legend_handles_labels()[0] + b2.get_legend_handles_labels()[0]
    b.legend(lines, [ln.get_label() for ln in lines], loc="center right")
    ctx.savefig(fig, "temperature.png")


def _plot_templates(ctx: RunContext, per_template: dict[str, float]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(per_template)
    colours = ["C3" if t in HELDOUT_TEMPLATES else "C0" for t in names]
    ax.barh(range(len(names)), [per_template[t] for t in names], color=colours)
    ax.set_yticks(range(len(names)), [t.format("{class}") for t in names])
    ax.axvline(0.1, color="grey", ls="--", lw=1, label="chance")
    ax.bar(0, 0, color="C3", label="held-out template")
    ax.bar(0, 0, color="C0", label="training template")
    ax.set_xlabel("zero-shot test accuracy (one template)")
    ax.set_title("Zero-shot CIFAR-10 accuracy per prompt template")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ctx.savefig(fig, "templates.png")


def _table_md(m: dict[str, Any]) -> str:
    lines = ["| prompts | zero-shot test accuracy |", "|---|---|",
             f"| held-out templates, ensemble | {m['zero_shot_heldout_ensemble']:.4f} |",
             f"| held-out templates, mean of single | {m['zero_shot_heldout_mean_single']:.4f} |",
             f"| training templates, ensemble | {m['zero_shot_train_ensemble']:.4f} |",
             f"| all templates, ensemble | {m['zero_shot_all_ensemble']:.4f} |",
             f"| chance | {m['chance']:.2f} |",
             "", "| template | accuracy |", "|---|---|"]  # fmt: skip
    held = set(m["heldout_templates"])
    for t, acc in m["zero_shot_per_template"].items():
        lines.append(f"| `{t}`{' (held out)' if t in held else ''} | {acc:.4f} |")
    lines += ["", f"final temperature {m['final_temperature']:.4f} (logit scale "
              f"{m['final_logit_scale']:.1f}); similarity diagonal − off-diagonal: "
              f"{m['similarity_diagonal_margin']:.3f}"]  # fmt: skip
    return "\n".join(lines) + "\n"
