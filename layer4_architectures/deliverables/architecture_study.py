"""``architecture_study``: depth against width at fixed parameter budgets, for a ResNet on
CIFAR-10 and a GPT on TinyStories, at **equal steps** and at **equal training FLOPs**, and a power
law fitted to the GPT losses of each.

**The grid.** For each family, each parameter budget B and each depth D of a short list, the
width is the one whose exact parameter count (closed form below) is closest to B: a
(budget × depth) grid of models of (nearly) equal size and different shape. Every model of a
family trains through layer 3's pipeline on the same data, with the same optimiser and schedule
(its length a fraction of the run) and the same batch size, twice:

* **equal steps**: every model takes ``*_steps`` steps, so sees the same data; the compute
  differs (a model's FLOPs per step grow with its size and, at equal size, with its shape);
* **equal FLOPs**: every model of the family gets the same training-FLOP budget F
  (``*_train_flops``), ``steps_i = round(F / flops_per_step_i)``: small models take many steps,
  large ones few, the comparison of Kaplan et al. 2020 §6 and of Chinchilla's IsoFLOP profiles.

* GPT: :class:`~layer4_architectures.sequence.gpt.GPT` (RoPE, SwiGLU, RMSNorm, tied embedding),
  ``n_layer = D``, ``n_embd = d`` a multiple of 8, heads of 16-32 dims
  (:func:`gpt_heads`). Its size is the non-embedding count of Kaplan et al. 2020, the blocks
  and the final norm::

      N(D, d) = D · (4d² + 3·d·h + 2d) + d,    h = 32·⌈8d/(3·32)⌉ (SwiGLU width)

  and its training FLOPs per token are the matmul count ``6·(N_mm + V·d) + 12·D·T·d`` (N_mm: N
  less the norm gains; V·d the tied output matmul; 12DTd the attention scores and mixing,
  forward and backward: :mod:`layer4_architectures.sequence.flops`), checked against
  FlopCounterMode in the tests.
* ResNet: the CIFAR :class:`~layer4_architectures.vision.resnet.ResNet` with three stages of
  widths (w, 2w, 4w), D basic blocks each (ResNet-(6D+2)), option-A shortcuts::

      N(D, w) = 378·D·w² − 90·w² + 28·D·w + 69·w + 10

  (convolutions 18w² per block at width w, ×4 per stage, less the narrower first convolution
  of stages 2 and 3; BN 2 per channel; the 4w·10 + 10 head). Training FLOPs per image: 3 × the
  forward convolutions and linear counted by :func:`~layer4_architectures.vision.flops.count_flops`,
  less one forward of the stem convolution (its input needs no gradient).

**The fit.** On the GPT points (every shape) of each variant, ``L(N) = a · N^(−α) + c`` by
``scipy.optimize.curve_fit``; ``R² = 1 − Σ(L − L̂)² / Σ(L − L̄)²`` is the share of the loss's
variance over the grid that N alone explains, so shape effects at equal N lower it. At equal
FLOPs a larger N also means fewer tokens, so the law in N alone need not hold at all there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.train import compose, run
from layer4_architectures.vision.flops import count_flops
from layer4_architectures.vision.resnet import ResNet

WIDTH_STEP = {"gpt": 8, "resnet": 1}
IMAGE_SIDE = 32
N_CLASSES = 10
MAX_WIDTH = 512
MIN_STEPS = 10  # an equal-FLOPs run shorter than this is too short to say anything
FAMILIES = ("gpt", "resnet")
VARIANTS = ("steps", "flops")
DATA = {"gpt": "TinyStories", "resnet": "CIFAR-10"}
VARIANT_TITLE = {"steps": "equal steps", "flops": "equal FLOPs"}


@dataclass
class GridPoint:
    """One trained model of the study."""

    family: str  # "gpt" | "resnet"
    budget: int
    depth: int
    width: int
    params: int
    flops_per_step: float
    variant: str = ""  # "steps" | "flops"
    steps: int = 0
    train_flops: float = math.nan  # flops_per_step · steps
    loss: float = math.nan
    accuracy: float = math.nan
    train_seconds: float = math.nan


# ----------------------------------------------------------------------------- counting


def swiglu_hidden(d: int) -> int:
    """The GPT's default SwiGLU width: 8/3·d rounded up to a multiple of 32."""
    return 32 * math.ceil(8 * d / 3 / 32)


def gpt_params(depth: int, d: int) -> int:
    """Non-embedding parameters N(D, d) of the GPT: blocks + final norm."""
    return depth * (4 * d * d + 3 * d * swiglu_hidden(d) + 2 * d) + d


def gpt_train_flops_per_token(depth: int, d: int, vocab: int, seq_len: int) -> int:
    """``6·(N_mm + V·d) + 12·D·T·d``: forward + backward matmul FLOPs per token."""
    n_matmul = gpt_params(depth, d) - (2 * depth + 1) * d  # the norm gains are in no matmul
    return 6 * (n_matmul + vocab * d) + 12 * depth * seq_len * d


def resnet_params(depth: int, w: int) -> int:
    """Parameters N(D, w) of the CIFAR ResNet, stages (w, 2w, 4w) of D basic blocks, 10 classes."""
    return 378 * depth * w * w - 90 * w * w + 28 * depth * w + 69 * w + 10


def resnet_model(depth: int, w: int) -> ResNet:
    """The study's ResNet of depth D (blocks per stage) and base width w."""
    return ResNet(widths=(w, 2 * w, 4 * w), blocks=(depth,) * 3)


def resnet_train_flops_per_image(depth: int, w: int) -> int:
    """3 × forward (convolutions + linear) − the stem convolution's input gradient."""
    report = count_flops(resnet_model(depth, w), (1, 3, IMAGE_SIDE, IMAGE_SIDE))
    return 3 * report.total - report.per_layer["stem.0.0"]


def gpt_heads(d: int) -> int:
    """The most heads (of 8, 4, 2, 1) that split d into even heads of at least 16 dims."""
    for h in (8, 4, 2):
        if d % h == 0 and (d // h) % 2 == 0 and d // h >= 16:
            return h
    return 1


def solve_width(params_of, depth: int, budget: int, step: int) -> int:
    """The width (a multiple of ``step``) whose parameter count is closest to ``budget``."""
    width, best = step, None
    for w in range(step, MAX_WIDTH + 1, step):
        gap = abs(params_of(depth, w) - budget)
        if best is None or gap < best:
            width, best = w, gap
    return width


def grid(family: str, budgets: list[int], depths: list[int], **counts: int) -> list[GridPoint]:
    """The (budget × depth) models of a family: widths solved, sizes and FLOPs per step counted.

    ``counts``: ``batch`` for both families, and ``vocab``, ``seq_len`` for the GPT.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: expected one of {FAMILIES}")
    if not budgets or not depths:
        raise ValueError(f"{family}: need at least one budget and one depth")
    if family == "resnet" and min(depths) < 1:
        raise ValueError(f"resnet depth {min(depths)}: expected >= 1 block per stage")
    params_of = gpt_params if family == "gpt" else resnet_params
    points = []
    for budget in budgets:
        for depth in depths:
            w = solve_width(params_of, depth, budget, WIDTH_STEP[family])
            if family == "gpt":
                per_token = gpt_train_flops_per_token(depth, w, counts["vocab"], counts["seq_len"])
                per_step = per_token * counts["batch"] * counts["seq_len"]
            else:
                per_step = resnet_train_flops_per_image(depth, w) * counts["batch"]
            points.append(GridPoint(family, budget, depth, w, params_of(depth, w), float(per_step)))
    return points


def equal_steps(points: list[GridPoint], steps: int) -> list[GridPoint]:
    """The grid with every model at ``steps`` steps (its FLOPs follow)."""
    if steps < 1:
        raise ValueError(f"steps={steps}: expected >= 1")
    return [
        replace(p, variant="steps", steps=steps, train_flops=p.flops_per_step * steps)
        for p in points
    ]


def equal_flops(points: list[GridPoint], budget_flops: float) -> list[GridPoint]:
    """The grid with every model at (as nearly as whole steps allow) ``budget_flops`` FLOPs.

    ``steps = round(F / flops_per_step)``, so ``|steps · flops_per_step − F| ≤ flops_per_step / 2``.
    """
    out = []
    for p in points:
        steps = round(budget_flops / p.flops_per_step)
        if steps < MIN_STEPS:
            raise ValueError(
                f"train_flops={budget_flops:.3g} buys the {p.family} of depth {p.depth}, width "
                f"{p.width} ({p.flops_per_step:.3g} FLOPs per step) only {steps} steps: need "
                f">= {MIN_STEPS}, raise the FLOP budget"
            )
        out.append(replace(p, variant="flops", steps=steps, train_flops=p.flops_per_step * steps))
    return out


# ----------------------------------------------------------------------------- fit


def power_law(n: np.ndarray, a: float, alpha: float, c: float) -> np.ndarray:
    return a * np.power(n, -alpha) + c


def fit_power_law(n: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """``L = a·N^(−α) + c`` by least squares, with R² of the fit (NaNs if it does not converge)."""
    if len(n) < 4:
        raise ValueError(f"a 3-parameter power law needs at least 4 points, got {len(n)}")
    p0 = (10.0, 0.3, max(0.0, float(loss.min()) - 0.5))
    bounds = ([0.0, 0.0, 0.0], [np.inf, 3.0, float(loss.min())])
    try:
        (a, alpha, c), _ = curve_fit(power_law, n, loss, p0=p0, bounds=bounds, maxfev=20000)
    except RuntimeError:  # no convergence within maxfev: report it, do not invent a law
        return {"a": math.nan, "alpha": math.nan, "c": math.nan, "r2": math.nan}
    residual = loss - power_law(n, a, alpha, c)
    r2 = 1.0 - float((residual**2).sum()) / float(((loss - loss.mean()) ** 2).sum())
    return {"a": float(a), "alpha": float(alpha), "c": float(c), "r2": r2}


def _gpt_fit(points: list[GridPoint]) -> dict[str, float]:
    n = np.array([p.params for p in points], dtype=np.float64)
    return fit_power_law(n, np.array([p.loss for p in points]))


# ----------------------------------------------------------------------------- the deliverable


@deliverable(
    quick={
        "data_source": "real",
        "vocab_size": 2048,
        "seq_len": 64,
        "gpt_budgets": [25000, 100000, 400000],
        "gpt_depths": [1, 2, 4],
        "gpt_batch_size": 16,
        "gpt_steps": 250,
        "gpt_train_flops": 4.0e11,
        "gpt_lr": 3.0e-3,
        "resnet_budgets": [10000, 40000, 160000],
        "resnet_depths": [1, 2, 3],
        "resnet_batch_size": 64,
        "resnet_steps": 150,
        "resnet_train_flops": 3.5e11,
        "resnet_lr": 0.1,
        "resnet_n_test": 2000,
    },
    full={
        "seq_len": 128,
        "gpt_budgets": [100000, 400000, 1600000, 6400000],
        "gpt_depths": [2, 4, 8],
        "gpt_batch_size": 32,
        "gpt_steps": 3000,
        "gpt_train_flops": 1.0e14,
        "gpt_lr": 2.0e-3,
        "resnet_budgets": [40000, 160000, 640000],
        "resnet_depths": [1, 2, 3, 5],
        "resnet_batch_size": 128,
        "resnet_steps": 3000,
        "resnet_train_flops": 6.0e13,
        "resnet_n_test": None,
    },
    headline=[
        "power_law_alpha",
        "power_law_fit_r2",
        "power_law_alpha_equal_flops",
        "power_law_fit_r2_equal_flops",
    ],
)
def architecture_study(ctx: RunContext) -> dict[str, Any]:
    """GPT and ResNet grids of depth × width at fixed budgets, at equal steps and equal FLOPs."""
    points = _plan(ctx.config)
    for p in ctx.progress(points, total=len(points)):
        _train(ctx, p)
    ctx.write_json("grid.json", [asdict(p) for p in points])
    by = {(f, v): [p for p in points if p.family == f and p.variant == v]
          for f in FAMILIES for v in VARIANTS}  # fmt: skip
    fits = {v: _gpt_fit(by["gpt", v]) for v in VARIANTS}
    ctx.write_text("table.md", tables(points))
    _plot_loss_vs_params(ctx, by, fits)
    _plot_loss_vs_flops(ctx, by)
    _plot_depth_vs_width(ctx, by)
    out: dict[str, Any] = {}
    for v, suffix in (("steps", ""), ("flops", "_equal_flops")):
        for key in ("alpha", "a", "c"):
            out[f"power_law_{key}{suffix}"] = fits[v][key]
        out[f"power_law_fit_r2{suffix}"] = fits[v]["r2"]
        for f in FAMILIES:
            out[f"{f}_best{suffix}"] = _best(by[f, v])
            out[f"{f}_best_depth_per_budget{suffix}"] = _best_depths(by[f, v])
    out.update(
        gpt_train_flops_budget=ctx.config["gpt_train_flops"],
        resnet_train_flops_budget=ctx.config["resnet_train_flops"],
        n_models=len(points),
        train_seconds=sum(p.train_seconds for p in points),
        equal={
            "power_law_*": "equal steps (every model the same steps, so the same data)",
            "power_law_*_equal_flops": "equal training FLOPs per family (steps = F / per step)",
        },
    )
    return out


def _plan(cfg: dict[str, Any]) -> list[GridPoint]:
    """Both families' grids, each at equal steps and at equal FLOPs."""
    gpt = grid(
        "gpt", cfg["gpt_budgets"], cfg["gpt_depths"], vocab=cfg["vocab_size"],
        seq_len=cfg["seq_len"], batch=cfg["gpt_batch_size"],
    )  # fmt: skip
    resnet = grid(
        "resnet", cfg["resnet_budgets"], cfg["resnet_depths"], batch=cfg["resnet_batch_size"]
    )
    return (
        equal_steps(gpt, cfg["gpt_steps"])
        + equal_flops(gpt, cfg["gpt_train_flops"])
        + equal_steps(resnet, cfg["resnet_steps"])
        + equal_flops(resnet, cfg["resnet_train_flops"])
    )


def _train(ctx: RunContext, p: GridPoint) -> None:
    cfg = ctx.config
    folder = f"{p.family}_{p.variant}_b{p.budget}_d{p.depth}"
    overrides = _gpt_overrides(cfg, p) if p.family == "gpt" else _resnet_overrides(cfg, p)
    overrides += [
        f"seed={ctx.seed}",
        "logger=jsonl",
        "trainer.eval_every=0",
        f"trainer.max_steps={p.steps}",
        f"trainer.log_every={max(1, p.steps // 5)}",
    ]
    m = run(compose(overrides), ctx.out_dir / folder, device=ctx.device, parent_id=ctx.run_id)
    p.loss, p.accuracy, p.train_seconds = m["test_loss"], m["test_accuracy"], m["train_seconds"]


def _gpt_overrides(cfg: dict[str, Any], p: GridPoint) -> list[str]:
    return [
        "experiment=gpt_tinystories",
        f"data.source={cfg['data_source']}",
        f"data.vocab_size={cfg['vocab_size']}",
        f"data.seq_len={cfg['seq_len']}",
        f"data.batch_size={cfg['gpt_batch_size']}",
        f"model.block_size={cfg['seq_len']}",
        f"model.n_layer={p.depth}",
        f"model.n_embd={p.width}",
        f"model.n_head={gpt_heads(p.width)}",
        "model.dropout=0.0",
        f"optim.lr={cfg['gpt_lr']}",
    ]


def _resnet_overrides(cfg: dict[str, Any], p: GridPoint) -> list[str]:
    n_test = "null" if cfg["resnet_n_test"] is None else cfg["resnet_n_test"]
    w, d = p.width, p.depth
    return [
        "experiment=cifar_resnet20",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['resnet_batch_size']}",
        f"data.n_test={n_test}",
        f"model.widths=[{w},{2 * w},{4 * w}]",
        f"model.blocks=[{d},{d},{d}]",
        "task.label_smoothing=0.0",
        "task.flip_tta=false",
        f"optim.lr={cfg['resnet_lr']}",
    ]


def _best(points: list[GridPoint]) -> dict[str, Any]:
    best = min(points, key=lambda p: p.loss)
    return {"depth": best.depth, "width": best.width, "params": best.params, "loss": best.loss}


def _best_depths(points: list[GridPoint]) -> dict[str, int]:
    """Per budget, the depth with the lowest loss."""
    out = {}
    for budget in sorted({p.budget for p in points}):
        same = [p for p in points if p.budget == budget]
        out[str(budget)] = min(same, key=lambda p: p.loss).depth
    return out


def tables(points: list[GridPoint]) -> str:
    """The study as two markdown tables, equal steps then equal FLOPs."""
    parts = []
    for variant in VARIANTS:
        parts += [
            f"## {VARIANT_TITLE[variant]}",
            "",
            "| family | budget | depth | width | params | steps | train FLOPs | val loss | "
            "val accuracy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in (q for q in points if q.variant == variant):
            parts.append(
                f"| {p.family} | {p.budget:,} | {p.depth} | {p.width} | {p.params:,} | "
                f"{p.steps} | {p.train_flops:.3g} | {p.loss:.4f} | {p.accuracy:.4f} |"
            )
        parts.append("")
    return "\n".join(parts)


def _depth_label(family: str, depth: int) -> str:
    return f"depth {depth}" if family == "gpt" else f"ResNet-{6 * depth + 2}"


def _plot_loss_vs_params(ctx: RunContext, by: dict, fits: dict[str, dict[str, float]]) -> None:
    """Loss against parameters, one panel per (family, variant), one colour per depth."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for row, family in enumerate(FAMILIES):
        for col, variant in enumerate(VARIANTS):
            ax, fam = axes[row, col], by[family, variant]
            for i, depth in enumerate(sorted({p.depth for p in fam})):
                sel = sorted((p for p in fam if p.depth == depth), key=lambda p: p.params)
                ax.plot([p.params for p in sel], [p.loss for p in sel], "o-", color=f"C{i}",
                        label=_depth_label(family, depth))  # fmt: skip
            fit = fits[variant]
            if family == "gpt" and math.isfinite(fit["alpha"]):
                n = np.geomspace(min(p.params for p in fam), max(p.params for p in fam), 100)
                label = f"fit {fit['a']:.3g}·N^(-{fit['alpha']:.3f}) + {fit['c']:.3f}, "
                ax.plot(n, power_law(n, fit["a"], fit["alpha"], fit["c"]), "k--",
                        label=label + f"R²={fit['r2']:.3f}")  # fmt: skip
            ax.set_xscale("log")
            ax.set_xlabel("parameters N" + (" (non-embedding)" if family == "gpt" else ""))
            ax.set_ylabel("validation loss (nats)")
            ax.set_title(f"{family.upper()} on {DATA[family]}, {VARIANT_TITLE[variant]}")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "loss_vs_params.png")


def _plot_loss_vs_flops(ctx: RunContext, by: dict) -> None:
    """Loss against training FLOPs: equal-steps runs spread in FLOPs, equal-FLOPs runs at F."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, family in zip(axes, FAMILIES, strict=True):
        for variant, marker in zip(VARIANTS, ("o", "s"), strict=True):
            fam = by[family, variant]
            budgets = sorted({p.budget for p in fam})
            for i, depth in enumerate(sorted({p.depth for p in fam})):
                sel = [p for p in fam if p.depth == depth]
                label = f"{_depth_label(family, depth)}, {VARIANT_TITLE[variant]}"
                sizes = [20 + 25 * budgets.index(p.budget) for p in sel]
                ax.scatter([p.train_flops for p in sel], [p.loss for p in sel], s=sizes,
                           marker=marker, color=f"C{i}", alpha=0.8, label=label)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs (marker size grows with the parameter budget)")
        ax.set_ylabel("validation loss (nats)")
        ax.set_title(f"{family.upper()} on {DATA[family]}: loss vs training FLOPs")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "loss_vs_flops.png")


def _plot_depth_vs_width(ctx: RunContext, by: dict) -> None:
    """Loss against depth at each (nearly) fixed budget: the shape effect at equal size."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for row, family in enumerate(FAMILIES):
        for col, variant in enumerate(VARIANTS):
            ax, fam = axes[row, col], by[family, variant]
            for i, budget in enumerate(sorted({p.budget for p in fam})):
                sel = sorted((p for p in fam if p.budget == budget), key=lambda p: p.depth)
                ax.plot([p.depth for p in sel], [p.loss for p in sel], "o-", color=f"C{i}",
                        label=f"~{budget:,} params")  # fmt: skip
                for p in sel:
                    ax.annotate(f"w={p.width}, {p.steps} st", (p.depth, p.loss), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))  # fmt: skip
            unit = "blocks" if family == "gpt" else "blocks per stage"
            ax.set_xlabel(f"depth ({unit}); width and steps annotated")
            ax.set_ylabel("validation loss (nats)")
            ax.set_title(f"{family.upper()}: depth vs width at equal parameters, "
                         f"{VARIANT_TITLE[variant]}")  # fmt: skip
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "depth_vs_width.png")
