"""``guided_diffusion``: classifier-free guidance swept over w on layer 4's conditional DDPM.

1. Load layer 4's class-conditional U-Net (``load_base("ddpm")``: its EMA weights, trained with
   label drop-out 0.1) with the noise schedule its checkpoint names, and layer 4's yardstick
   (the ``feature_classifier`` run, the MNIST test set).
2. For every guidance scale w (ε̃ = ε_∅ + w(ε_y − ε_∅); w = 0 unconditional, w = 1 conditional,
   w > 1 guided; Ho & Salimans' w' = w − 1) draw ``n_per_scale`` samples, balanced over the ten
   digits, all scales from the same seed (:func:`~layer7_research.multimodal.guidance.sample_
   sweep`; ``sampler``/``steps``/``eta`` are layer 4's: DDIM with η = 1 on 20 of T = 100 steps in
   the quick preset, the DDPM ancestral chain in the full one).
3. Judge each set (:func:`~layer7_research.multimodal.guidance.judge`): the accuracy of the
   requested class under the feature classifier, FID and KID against the MNIST test set beside
   the real-vs-real floor at the same n, the confident share, the class entropy.

Artifacts: ``tradeoff.png`` (accuracy vs FID labelled by w; the metrics against w),
``sample_grid.png`` (rows = w, columns = the requested digit, the same x_T down each column),
``table.md``, ``scores.json`` (per w, with per-class accuracy and class histograms),
``samples.safetensors`` (uint8 images per w, and the labels asked for).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layer0_math.lab import RunContext, deliverable, pyplot
from layer4_architectures.generative.diffusion import Diffusion, NoiseSchedule
from layer4_architectures.generative.yardstick import Yardstick, image_grid
from layer7_research.artifacts import load_base
from layer7_research.multimodal.guidance import (
    GuidedSet,
    check_scales,
    ho_salimans_scale,
    judge,
    sample_sweep,
    scale_key,
)

CONDITIONAL = 1.0  # the scale whose row is the plain conditional model (reported in the headline)


@deliverable(
    quick={
        "scales": [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0],
        "n_per_scale": 500,
        "classes": list(range(10)),
        "sampler": "ddim",
        "steps": 20,
        "eta": 1.0,  # layer 4 measured DDIM η = 0 at 2.8x DDPM's FID on its quick model, η = 1: 1x
        "chunk_size": 250,
    },
    full={"n_per_scale": 10000, "sampler": "ddpm", "steps": None, "chunk_size": 2500},
    headline=["best_fid_w", "best_fid", "fid_floor", "accuracy_w1", "accuracy_wmax", "fid_wmax"],
)
def guided_diffusion(ctx: RunContext) -> dict[str, Any]:
    """Sample the DDPM at every guidance scale, judge each set, plot the trade-off."""
    cfg = ctx.config
    if CONDITIONAL not in check_scales(cfg["scales"]):
        raise ValueError(f"scales must include w = 1 (the conditional model), got {cfg['scales']}")
    model = load_base("ddpm", device=ctx.device)
    diffusion = Diffusion(model, NoiseSchedule.make(model.config.schedule, model.config.timesteps))
    yardstick = Yardstick.from_runs(device=ctx.device)
    sets = sample_sweep(
        diffusion,
        cfg["scales"],
        cfg["n_per_scale"],
        classes=cfg["classes"],
        sampler=cfg["sampler"],
        steps=cfg["steps"],
        eta=cfg["eta"],
        seed=ctx.seed,
        chunk_size=cfg["chunk_size"],
        progress=ctx.progress,
    )
    rows = [judge(yardstick, s) for s in ctx.progress(sets, desc="judging")]
    floor = yardstick.floor(cfg["n_per_scale"])
    _save_samples(ctx, sets)
    ctx.write_json("scores.json", {"rows": rows, "floor": floor})
    ctx.write_text("table.md", table(rows, floor, cfg))
    plot_tradeoff(ctx, rows, floor)
    plot_grid(ctx, sets, cfg["classes"])
    return {
        **headline(rows, floor),
        **_per_scale(rows),
        "n_per_scale": cfg["n_per_scale"],
        "sampler": cfg["sampler"],
        "sampler_steps": cfg["steps"] or diffusion.schedule.timesteps,
        "eta": cfg["eta"] if cfg["sampler"] == "ddim" else None,
        "timesteps": diffusion.schedule.timesteps,
        "feature_classifier_accuracy": yardstick.classifier_accuracy,
        "kid_floor": floor["kid_floor"],
    }


def headline(rows: list[dict[str, Any]], floor: dict[str, float]) -> dict[str, Any]:
    """The best-FID scale and its FID, the floor, accuracy at w = 1 and at the largest w."""
    best = min(rows, key=lambda r: r["fid"])
    by_w = {r["w"]: r for r in rows}
    top = by_w[max(by_w)]
    return {
        "best_fid_w": best["w"],
        "best_fid": best["fid"],
        "fid_floor": floor["fid_floor"],
        "accuracy_w1": by_w[CONDITIONAL]["accuracy"],
        "fid_w1": by_w[CONDITIONAL]["fid"],
        "wmax": top["w"],
        "accuracy_wmax": top["accuracy"],
        "fid_wmax": top["fid"],
        "best_accuracy_w": max(rows, key=lambda r: r["accuracy"])["w"],
    }


def _per_scale(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("accuracy", "fid", "kid", "kid_std", "confident_share", "class_entropy", "seconds")
    return {f"{scale_key(r['w'])}_{k}": r[k] for r in rows for k in keys}


def _save_samples(ctx: RunContext, sets: list[GuidedSet]) -> None:
    arrays = {scale_key(s.w): (s.images * 255).round().to(torch.uint8).numpy() for s in sets}
    arrays["labels"] = sets[0].labels.numpy()
    ctx.save_arrays("samples", arrays, {"scales": [s.w for s in sets], "layout": "N,1,28,28"})


def table(rows: list[dict[str, Any]], floor: dict[str, float], cfg: dict[str, Any]) -> str:
    """Markdown: one row per w (and Ho & Salimans' w'), the floor underneath."""
    steps = f"{cfg['steps']} steps, η = {cfg['eta']:g}" if cfg["sampler"] == "ddim" else "all steps"
    lines = [
        f"Classifier-free guidance on layer 4's DDPM: {cfg['n_per_scale']} samples per w, "
        f"sampler {cfg['sampler']} ({steps}), judged by the feature classifier.",
        "",
        "| w | w' (Ho & Salimans) | requested-class accuracy | FID | KID ± std "
        "| confident share | class entropy | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['w']:g} | {ho_salimans_scale(r['w']):g} | {r['accuracy']:.3f} "
            f"| {r['fid']:.2f} | {r['kid']:.4f} ± {r['kid_std']:.4f} "
            f"| {r['confident_share']:.3f} | {r['class_entropy']:.3f} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        f"Real-vs-real floor at the same n: FID {floor['fid_floor']:.2f}, "
        f"KID {floor['kid_floor']:.4f}.",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- figures


def plot_tradeoff(ctx: RunContext, rows: list[dict[str, Any]], floor: dict[str, float]) -> None:
    """Left: accuracy against FID, each point labelled by w. Right: the metrics against w."""
    w = [r["w"] for r in rows]
    fid, acc = [r["fid"] for r in rows], [r["accuracy"] for r in rows]
    plt = pyplot()
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    left.plot(fid, acc, "o-", label="guidance sweep")
    for wi, f, a in zip(w, fid, acc, strict=True):
        left.annotate(f"w={wi:g}", (f, a), textcoords="offset points", xytext=(5, -10))
    left.axvline(floor["fid_floor"], ls="--", c="gray", label="real-vs-real FID floor")
    left.set(
        xlabel="FID vs MNIST test (feature classifier)",
        ylabel="requested-class accuracy",
        title="the guidance trade-off",
    )
    left.legend()
    for key, label in (
        ("accuracy", "requested-class accuracy"),
        ("confident_share", "confident share (max p ≥ 0.9)"),
        ("class_entropy", "class entropy / log 10"),
    ):
        mid.plot(w, [r[key] for r in rows], "o-", label=label)
    mid.set(xlabel="guidance scale w (1 = conditional)", ylabel="share", title="fidelity vs w")
    mid.legend()
    right.plot(w, fid, "o-", label="samples")
    right.axhline(floor["fid_floor"], ls="--", c="gray", label="real-vs-real floor")
    right.set(xlabel="guidance scale w (1 = conditional)", ylabel="FID", title="FID vs w")
    right.legend()
    fig.tight_layout()
    ctx.savefig(fig, "tradeoff.png")


def plot_grid(ctx: RunContext, sets: list[GuidedSet], classes: list[int]) -> None:
    """Rows = w, columns = the requested class: the first sample of each class at each w (the
    same x_T and noise down a column, so a column shows what guidance alone changes)."""
    first = [int(np.flatnonzero(sets[0].labels.numpy() == c)[0]) for c in classes]
    images = torch.cat([s.images[first] for s in sets])  # (W·K, 1, 28, 28)
    grid = image_grid(images, nrow=len(classes))
    h = images.shape[-1] + 2  # one cell with image_grid's padding
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(0.75 * len(classes) + 1, 0.75 * len(sets) + 1))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([2 + h * j + h / 2 - 1 for j in range(len(classes))], [str(c) for c in classes])
    ax.set_yticks([2 + h * i + h / 2 - 1 for i in range(len(sets))], [f"w={s.w:g}" for s in sets])
    ax.tick_params(length=0)
    ax.set(xlabel="requested class", ylabel="guidance scale")
    ax.set_title("classifier-free guidance (same x_T down each column)", fontsize=10)
    ctx.savefig(fig, "sample_grid.png")
