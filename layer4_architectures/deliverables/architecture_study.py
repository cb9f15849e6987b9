"""``architecture_study``: depth against width at fixed parameter budgets, for a CNN on CIFAR-10
and a GPT on TinyStories, and a power law fitted to the GPT losses.

**The grid.** For each family, each parameter budget B and each depth D of a short list, the
width is the one whose exact parameter count (closed form below) is closest to B: a
(budget × depth) grid of models of (nearly) equal size and different shape. Every model of a
family trains through layer 3's pipeline on the same data, with the same optimiser and schedule,
the same batch size and the same number of steps (**equal steps**, so equal data; the compute
differs and is reported: the loss-vs-FLOPs plot reads the same runs at their training FLOPs).

* GPT: :class:`~layer4_architectures.sequence.gpt.GPT` (RoPE, SwiGLU, RMSNorm, tied embedding),
  ``n_layer = D``, ``n_embd = d`` a multiple of 8, heads of 16-32 dims
  (:func:`gpt_heads`). Its size is the non-embedding
  count of Kaplan et al. 2020, the blocks and the final norm::

      N(D, d) = D · (4d² + 3·d·h + 2d) + d,    h = 32·⌈8d/(3·32)⌉ (SwiGLU width)

  and its training FLOPs per token are the matmul count ``6·(N_mm + V·d) + 12·D·T·d`` (N_mm: N
  less the norm gains; V·d the tied output matmul; 12DTd the attention scores and mixing, forward
  and backward), which ``tests/layer4/test_moe_deliverables.py`` checks against FlopCounterMode.
* CNN: layer 3's :class:`~layer3_framework.ports.CifarCNN` with D blocks of constant width w
  (Conv3×3 → BN → ReLU → MaxPool2), then a Linear on the (32/2^D)² · w features::

      N(D, w) = 27w + 9w²(D − 1) + 2wD + 10·w·(32/2^D)² + 10

  Training FLOPs per image: 3 × the forward convolutions and linear (2·9·c_in·c_out·H·W per conv),
  less one forward of the first convolution (its input needs no gradient).

**The fit.** On the GPT points (every shape), ``L(N) = a · N^(−α) + c`` by
``scipy.optimize.curve_fit``; ``R² = 1 − Σ(L − L̂)² / Σ(L − L̄)²`` is the share of the loss's
variance over the grid that N alone explains, so shape effects at equal N lower it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.train import compose, run

WIDTH_STEP = 8
IMAGE_SIDE = 32
N_CLASSES = 10


@dataclass
class GridPoint:
    """One trained model of the study."""

    family: str  # "gpt" | "cnn"
    budget: int
    depth: int
    width: int
    params: int
    train_flops: float
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


def cnn_params(depth: int, w: int) -> int:
    """Parameters N(D, w) of CifarCNN with D blocks of width w on 3×32×32, 10 classes."""
    side = IMAGE_SIDE // 2**depth
    return 27 * w + 9 * w * w * (depth - 1) + 2 * w * depth + N_CLASSES * w * side * side + 10


def cnn_train_flops_per_image(depth: int, w: int) -> int:
    """3 × forward (convolutions + linear) − the first convolution's input gradient."""
    convs = []
    c_in, side = 3, IMAGE_SIDE
    for _ in range(depth):
        convs.append(2 * 9 * c_in * w * side * side)
        c_in, side = w, side // 2
    linear = 2 * w * side * side * N_CLASSES
    return 3 * (sum(convs) + linear) - convs[0]


def gpt_heads(d: int) -> int:
    """The most heads (of 8, 4, 2, 1) that split d into even heads of at least 16 dims."""
    for h in (8, 4, 2):
        if d % h == 0 and (d // h) % 2 == 0 and d // h >= 16:
            return h
    return 1


def solve_width(params_of, depth: int, budget: int, step: int) -> int:
    """The width (a multiple of ``step``) whose parameter count is closest to ``budget``."""
    width, best = step, None
    for w in range(step, 64 * step + 1, step):
        gap = abs(params_of(depth, w) - budget)
        if best is None or gap < best:
            width, best = w, gap
    return width


def grid(family: str, budgets: list[int], depths: list[int], **counts: int) -> list[GridPoint]:
    """The (budget × depth) models of a family, widths solved, sizes and FLOPs counted."""
    if not budgets or not depths:
        raise ValueError(f"{family}: need at least one budget and one depth")
    points = []
    for budget in budgets:
        for depth in depths:
            if family == "gpt":
                w = solve_width(gpt_params, depth, budget, WIDTH_STEP)
                n = gpt_params(depth, w)
                flops = gpt_train_flops_per_token(depth, w, counts["vocab"], counts["seq_len"])
                flops *= counts["batch"] * counts["seq_len"] * counts["steps"]
            else:
                if not 1 <= depth <= 5:
                    raise ValueError(f"cnn depth {depth}: expected 1..5 (32 px, one pool each)")
                w = solve_width(cnn_params, depth, budget, 2)
                n = cnn_params(depth, w)
                flops = cnn_train_flops_per_image(depth, w) * counts["batch"] * counts["steps"]
            points.append(GridPoint(family, budget, depth, w, n, float(flops)))
    return points


# ----------------------------------------------------------------------------- fit


def power_law(n: np.ndarray, a: float, alpha: float, c: float) -> np.ndarray:
    return a * np.power(n, -alpha) + c


def fit_power_law(n: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """``L = a·N^(−α) + c`` by least squares, with R² of the fit."""
    if len(n) < 4:
        raise ValueError(f"a 3-parameter power law needs at least 4 points, got {len(n)}")
    p0 = (10.0, 0.3, max(0.0, float(loss.min()) - 0.5))
    bounds = ([0.0, 0.0, 0.0], [np.inf, 3.0, float(loss.min())])
    (a, alpha, c), _ = curve_fit(power_law, n, loss, p0=p0, bounds=bounds, maxfev=20000)
    residual = loss - power_law(n, a, alpha, c)
    r2 = 1.0 - float((residual**2).sum()) / float(((loss - loss.mean()) ** 2).sum())
    return {"a": float(a), "alpha": float(alpha), "c": float(c), "r2": r2}


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
        "gpt_lr": 3.0e-3,
        "cnn_budgets": [10000, 40000, 160000],
        "cnn_depths": [2, 3, 4],
        "cnn_batch_size": 64,
        "cnn_steps": 150,
        "cnn_lr": 0.05,
        "cnn_n_test": 2000,
    },
    full={
        "seq_len": 128,
        "gpt_budgets": [100000, 400000, 1600000, 6400000],
        "gpt_depths": [2, 4, 8],
        "gpt_batch_size": 32,
        "gpt_steps": 3000,
        "gpt_lr": 2.0e-3,
        "cnn_budgets": [40000, 160000, 640000],
        "cnn_depths": [2, 3, 4, 5],
        "cnn_batch_size": 128,
        "cnn_steps": 3000,
        "cnn_lr": 0.1,
        "cnn_n_test": None,
    },
    headline=["power_law_alpha", "power_law_fit_r2"],
)
def architecture_study(ctx: RunContext) -> dict[str, Any]:
    """GPT and CNN grids of depth × width at fixed budgets; table, plots, power-law fit."""
    cfg = ctx.config
    gpt = grid(
        "gpt", cfg["gpt_budgets"], cfg["gpt_depths"], vocab=cfg["vocab_size"],
        seq_len=cfg["seq_len"], batch=cfg["gpt_batch_size"], steps=cfg["gpt_steps"],
    )  # fmt: skip
    cnn = grid(
        "cnn", cfg["cnn_budgets"], cfg["cnn_depths"],
        batch=cfg["cnn_batch_size"], steps=cfg["cnn_steps"],
    )  # fmt: skip
    points = gpt + cnn
    for p in ctx.progress(points, total=len(points)):
        _train(ctx, p)
    ctx.write_json("grid.json", [asdict(p) for p in points])
    n = np.array([p.params for p in gpt], dtype=np.float64)
    loss = np.array([p.loss for p in gpt])
    fit = fit_power_law(n, loss)
    ctx.write_text("table.md", table(points))
    _plot_loss_vs(ctx, points, fit, "params", "parameters N", "loss_vs_params.png")
    _plot_loss_vs(ctx, points, None, "train_flops", "training FLOPs", "loss_vs_flops.png")
    _plot_depth_vs_width(ctx, points)
    return {
        "power_law_alpha": fit["alpha"],
        "power_law_fit_r2": fit["r2"],
        "power_law_a": fit["a"],
        "power_law_c": fit["c"],
        "gpt_best": _best(gpt),
        "cnn_best": _best(cnn),
        "gpt_best_depth_per_budget": _best_depths(gpt),
        "cnn_best_depth_per_budget": _best_depths(cnn),
        "n_models": len(points),
        "train_seconds": sum(p.train_seconds for p in points),
        "equal": "steps (and so data); FLOPs differ per model and are reported",
    }


def _train(ctx: RunContext, p: GridPoint) -> None:
    cfg = ctx.config
    folder = f"{p.family}_b{p.budget}_d{p.depth}"
    overrides = _gpt_overrides(cfg, p) if p.family == "gpt" else _cnn_overrides(cfg, p)
    overrides += [f"seed={ctx.seed}", "logger=jsonl", "trainer.eval_every=0"]
    m = run(compose(overrides), ctx.out_dir / folder, device=ctx.device, parent_id=ctx.run_id)
    p.loss, p.accuracy, p.train_seconds = m["test_loss"], m["test_accuracy"], m["train_seconds"]


def _gpt_overrides(cfg: dict[str, Any], p: GridPoint) -> list[str]:
    steps = cfg["gpt_steps"]
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
        f"trainer.max_steps={steps}",
        f"trainer.log_every={max(1, steps // 5)}",
    ]


def _cnn_overrides(cfg: dict[str, Any], p: GridPoint) -> list[str]:
    steps = cfg["cnn_steps"]
    n_test = "null" if cfg["cnn_n_test"] is None else cfg["cnn_n_test"]
    return [
        "experiment=cifar10_cnn",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['cnn_batch_size']}",
        f"data.n_test={n_test}",
        f"model.widths=[{','.join([str(p.width)] * p.depth)}]",
        f"optim.lr={cfg['cnn_lr']}",
        f"trainer.max_steps={steps}",
        f"trainer.log_every={max(1, steps // 5)}",
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


def table(points: list[GridPoint]) -> str:
    """The study as a markdown table."""
    lines = [
        "| family | budget | depth | width | params | train FLOPs | val loss | val accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.family} | {p.budget:,} | {p.depth} | {p.width} | {p.params:,} | "
            f"{p.train_flops:.3g} | {p.loss:.4f} | {p.accuracy:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _plot_loss_vs(ctx, points, fit, attr: str, xlabel: str, name: str) -> None:
    """One panel per family: validation loss against ``attr``, one colour per depth."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, family, data in zip(axes, ("gpt", "cnn"), ("TinyStories", "CIFAR-10"), strict=True):
        fam = [p for p in points if p.family == family]
        for i, depth in enumerate(sorted({p.depth for p in fam})):
            sel = sorted((p for p in fam if p.depth == depth), key=lambda p: getattr(p, attr))
            xs, ys = [getattr(p, attr) for p in sel], [p.loss for p in sel]
            ax.plot(xs, ys, "o-", color=f"C{i}", label=f"depth {depth}")
        if fit is not None and family == "gpt":
            grid_n = np.geomspace(min(p.params for p in fam), max(p.params for p in fam), 100)
            label = (
                f"fit {fit['a']:.3g}·N^(-{fit['alpha']:.3f}) + {fit['c']:.3f}, R²={fit['r2']:.3f}"
            )
            ax.plot(grid_n, power_law(grid_n, fit["a"], fit["alpha"], fit["c"]), "k--", label=label)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel + (" (non-embedding)" if family == "gpt" and attr == "params" else ""))
        ax.set_ylabel("validation loss (nats)")
        ax.set_title(f"{family.upper()} on {data}, equal steps")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, name)


def _plot_depth_vs_width(ctx: RunContext, points: list[GridPoint]) -> None:
    """Loss against depth at each (nearly) fixed budget: the shape effect at equal size."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, family in zip(axes, ("gpt", "cnn"), strict=True):
        fam = [p for p in points if p.family == family]
        for i, budget in enumerate(sorted({p.budget for p in fam})):
            sel = sorted((p for p in fam if p.budget == budget), key=lambda p: p.depth)
            ax.plot([p.depth for p in sel], [p.loss for p in sel], "o-", color=f"C{i}",
                    label=f"~{budget:,} params")  # fmt: skip
            for p in sel:
                ax.annotate(f"w={p.width}", (p.depth, p.loss), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))  # fmt: skip
        ax.set_xlabel("depth (blocks); width annotated")
        ax.set_ylabel("validation loss (nats)")
        ax.set_title(f"{family.upper()}: depth vs width at equal parameters")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "depth_vs_width.png")
