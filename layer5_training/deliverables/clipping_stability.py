"""``clipping_stability``: a deep plain network past its stable learning rate, with and without
gradient clipping.

The network is a 20-layer ReLU MLP without normalisation (layer 3's ``MLPClassifier``, He-normal
weights ``W ~ N(0, 2/fan_in)``, zero biases) on MNIST, trained by SGD with momentum 0.9 at a
constant learning rate. Depth without normalisation makes the loss surface sharp and the
gradient norm ‖g‖ volatile: a step ``η g`` that is fine at one point overshoots wildly at the
next, and with momentum the overshoot compounds. Clipping caps the step:

    by global norm:  g ← g · min(1, c / ‖g‖₂)       the direction kept, ‖η g‖ ≤ η c
    by value:        g ← clamp(g, −c, c)             each coordinate capped (direction changes)

1. **The edge.** An unclipped probe over log-spaced learning rates finds the first one at which a
   run diverges; the edge is the probed rate just below it.
2. **The study.** At the edge and the next ``n_past`` probed rates above it, every clipping
   setting (none, global norm at each threshold, value once) trains ``steps`` steps over
   ``seeds`` seeds. The pre-clip global norm of every step is recorded by an optimizer pre-hook
   (:class:`~layer5_training.stability.ClipRecorder`: the norm clipping acts on).
3. **The measures** (rules in :mod:`layer5_training.stability`): divergence (a non-finite loss or
   one above ``divergence_factor`` × the first loss), loss spikes (``L_t > spike_ratio ·
   median`` of the previous ``spike_window`` losses; consecutive spike steps count once), the
   final test loss and accuracy of the runs that finished, and histograms of log ‖g‖ over time.

Rates are over the runs *past* the edge (the edge's own runs are shown, not counted). The
"clipped" headline is the clipping setting with the lowest divergence rate there (ties: the lower
mean final test loss), named in ``best_clip``. ``conclusion.md`` states what the numbers show.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.data import ImageData
from layer3_framework.device import resolve_device
from layer3_framework.models import MLPClassifier
from layer5_training.benchmarking import RunResult, RunSpec, train_curves
from layer5_training.stability import count_spikes, histogram_over_time, log_edges

MNIST_CLASSES = [str(i) for i in range(10)]


@deliverable(
    quick={
        "data_source": "real",
        "n_train": 20000,
        "n_test": 2000,
        "batch_size": 128,
        "depth": 20,
        "width": 128,
        "momentum": 0.9,
        "probe_lrs": [0.01, 0.03, 0.1, 0.3, 1.0],
        "probe_steps": 150,
        "n_past": 2,
        "steps": 200,
        "seeds": 3,
        "clips": [["none", None], ["norm", 4.0], ["norm", 1.0], ["norm", 0.25], ["value", 0.01]],
        "divergence_factor": 3.0,
        "spike_ratio": 2.0,
        "spike_window": 20,
        "hist_bins": 40,
        "steps_per_column": 5,
    },
    full={"n_train": None, "n_test": None, "steps": 1000, "seeds": 5, "probe_steps": 300},
    headline=["edge_lr", "divergence_rate_unclipped", "divergence_rate_clipped", "best_clip"],
)
def clipping_stability(ctx: RunContext) -> dict[str, Any]:
    """An LR probe for the edge, then clipping settings × rates past it × seeds: divergence,
    spikes, final loss, gradient-norm histograms over time."""
    cfg = ctx.config
    clips = _clips(cfg)
    data = _data(cfg)
    data.setup(0)
    build = _model_builder(cfg)
    device = str(resolve_device(ctx.device))

    def train(spec: RunSpec) -> RunResult:
        return train_curves(build, data, spec, device=device)

    probe = [
        train(_spec(cfg, lr, 0, ("none", None), cfg["probe_steps"])) for lr in cfg["probe_lrs"]
    ]
    edge, study_lrs = find_edge(cfg["probe_lrs"], [r.diverged for r in probe], cfg["n_past"])
    specs = [
        _spec(cfg, lr, seed, clip, cfg["steps"])
        for lr in study_lrs
        for clip in clips
        for seed in range(cfg["seeds"])
    ]
    results = [train(s) for s in ctx.progress(specs, total=len(specs), desc="clipping runs")]
    ctx.write_json("probe.json", [r.to_dict() for r in probe])
    ctx.write_json("runs.json", [r.to_dict() for r in results])
    summary = summarise(results, clips, study_lrs, edge, cfg)
    ctx.write_json("summary.json", summary)
    _plot_heatmaps(ctx, results, clips, study_lrs[:2], cfg)
    _plot_rates(ctx, summary, clips, study_lrs)
    _plot_losses(ctx, results, clips, study_lrs[1])
    ctx.write_text("conclusion.md", conclusion(summary, cfg))
    return _metrics(summary, probe, results)


# ----------------------------------------------------------------------------- the plan


def clip_label(mode: str, threshold: float | None) -> str:
    """``none``, ``norm_1``, ``value_0.01``: the name of a clipping setting in metrics."""
    return "none" if mode == "none" else f"{mode}_{threshold:g}"


def _clips(cfg: dict[str, Any]) -> list[tuple[str, float | None]]:
    clips = [(str(mode), None if t is None else float(t)) for mode, t in cfg["clips"]]
    if ("none", None) not in clips or len(clips) < 2:
        raise ValueError(f"clips {cfg['clips']}: expected ['none', null] and at least one clip")
    if cfg["seeds"] < 1 or cfg["n_past"] < 1:
        raise ValueError(f"seeds and n_past must be >= 1, got {cfg['seeds']}, {cfg['n_past']}")
    return clips


def find_edge(lrs: list[float], diverged: list[bool], n_past: int) -> tuple[float, list[float]]:
    """The stable edge (the probed rate just below the first that diverged) and the study's
    rates: the edge and up to ``n_past`` probed rates above it."""
    if list(lrs) != sorted(lrs):
        raise ValueError(f"probe_lrs must be increasing, got {lrs}")
    first = next((i for i, d in enumerate(diverged) if d), None)
    if first is None:
        raise ValueError(f"no probed learning rate diverged (probe_lrs={lrs}); add larger ones")
    if first == 0:
        raise ValueError(f"the smallest probed learning rate {lrs[0]} diverged; add smaller ones")
    return float(lrs[first - 1]), [float(lr) for lr in lrs[first - 1 : first + n_past]]


def _data(cfg: dict[str, Any]) -> ImageData:
    return ImageData(
        name="mnist",
        source=cfg["data_source"],
        shape=[1, 28, 28],
        classes=MNIST_CLASSES,
        batch_size=cfg["batch_size"],
        eval_batch_size=1000,
        mean=[0.1307],
        std=[0.3081],
        n_train=cfg["n_train"],
        n_test=cfg["n_test"],
    )


def _model_builder(cfg: dict[str, Any]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        model = MLPClassifier(784, 10, hidden=[cfg["width"]] * (cfg["depth"] - 1))
        for layer in model.layers:  # He et al. 2015: Var(W) = 2 / fan_in keeps ReLU signals O(1)
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        return model

    return build


def _spec(
    cfg: dict[str, Any], lr: float, seed: int, clip: tuple[str, float | None], steps: int
) -> RunSpec:
    return RunSpec(
        optimizer="sgd",
        lr=lr,
        seed=seed,
        steps=steps,
        hyper={"momentum": cfg["momentum"]},
        schedule="constant",
        clip=clip[0],
        clip_threshold=clip[1],
        divergence_factor=cfg["divergence_factor"],
        log_every=1,  # every step's loss: the spike rule needs them
    )


# ----------------------------------------------------------------------------- the summary


def _cell(runs: list[RunResult], cfg: dict[str, Any]) -> dict[str, Any]:
    finished = [r for r in runs if not r.diverged]
    return {
        "runs": len(runs),
        "diverged": sum(r.diverged for r in runs),
        "divergence_rate": sum(r.diverged for r in runs) / len(runs),
        "spikes_per_run": float(
            np.mean(
                [count_spikes(r.train_loss, cfg["spike_ratio"], cfg["spike_window"]) for r in runs]
            )
        ),
        "final_test_loss": float(np.mean([r.final_val for r in finished]))
        if finished
        else math.nan,
        "median_grad_norm": float(np.nanmedian(np.concatenate([r.grad_norms for r in runs]))),
    }


def summarise(
    results: list[RunResult],
    clips: list[tuple[str, float | None]],
    study_lrs: list[float],
    edge: float,
    cfg: dict[str, Any],
) -> dict[str, Any]:
    """Per clipping setting: one cell per study rate and one pooled over the rates past the edge;
    and the best clipping setting there."""

    def runs(clip: tuple[str, float | None], lrs: list[float]) -> list[RunResult]:
        return [
            r
            for r in results
            if (r.spec["clip"], r.spec["clip_threshold"]) == clip and r.spec["lr"] in lrs
        ]

    past = [lr for lr in study_lrs if lr > edge]
    table = {
        clip_label(*clip): {
            "per_lr": {str(lr): _cell(runs(clip, [lr]), cfg) for lr in study_lrs},
            "past_edge": _cell(runs(clip, past), cfg),
        }
        for clip in clips
    }
    clipped = [clip_label(*c) for c in clips if c[0] != "none"]

    def rank(label: str) -> tuple[float, float]:
        cell = table[label]["past_edge"]
        loss = cell["final_test_loss"]
        return cell["divergence_rate"], loss if math.isfinite(loss) else math.inf

    return {
        "edge_lr": edge,
        "study_lrs": study_lrs,
        "past_edge_lrs": past,
        "best_clip": min(clipped, key=rank),
        "table": table,
    }


def _metrics(summary: dict[str, Any], probe: list[RunResult], results: list[RunResult]) -> dict:
    table, best = summary["table"], summary["best_clip"]
    metrics: dict[str, Any] = {
        "edge_lr": summary["edge_lr"],
        "study_lrs": summary["study_lrs"],
        "divergence_rate_unclipped": table["none"]["past_edge"]["divergence_rate"],
        "divergence_rate_clipped": table[best]["past_edge"]["divergence_rate"],
        "best_clip": best,
    }
    for label, row in table.items():
        cell = row["past_edge"]
        metrics[f"divergence_rate_{label}"] = cell["divergence_rate"]
        metrics[f"spikes_per_run_{label}"] = cell["spikes_per_run"]
        metrics[f"final_test_loss_{label}"] = cell["final_test_loss"]
    metrics["probe_diverged"] = {str(r.spec["lr"]): r.diverged for r in probe}
    metrics["runs"] = len(results) + len(probe)
    metrics["run_seconds_total"] = float(sum(r.seconds for r in [*probe, *results]))
    return metrics


def conclusion(summary: dict[str, Any], cfg: dict[str, Any]) -> str:
    """What the analysis concludes, in sentences built from the measured numbers only."""
    table, best = summary["table"], summary["best_clip"]
    none, top = table["none"]["past_edge"], table[best]["past_edge"]
    past = ", ".join(f"{lr:g}" for lr in summary["past_edge_lrs"])
    rates = "; ".join(
        f"{label}: {row['past_edge']['diverged']}/{row['past_edge']['runs']} diverged, "
        f"{row['past_edge']['spikes_per_run']:.1f} spikes/run, final test loss "
        f"{row['past_edge']['final_test_loss']:.3f}"
        for label, row in table.items()
    )
    return (
        f"# What the analysis concludes\n\n"
        f"A {cfg['depth']}-layer plain ReLU MLP on MNIST with SGD (momentum {cfg['momentum']}) "
        f"is stable up to lr {summary['edge_lr']:g} in the unclipped probe (the next probed rate "
        f"diverged). Past that edge (lr {past}, {cfg['seeds']} seeds, {cfg['steps']} steps), "
        f"unclipped training diverged in {none['diverged']}/{none['runs']} runs; the best "
        f"clipping setting, {best}, diverged in {top['diverged']}/{top['runs']} "
        f"(final test loss {top['final_test_loss']:.3f} over the runs that finished).\n\n"
        f"Every setting past the edge ({rates}; a final loss of nan: no run finished).\n\n"
        f"Rules: diverged = a non-finite loss or one above {cfg['divergence_factor']} x the "
        f"first; a spike = a run of steps with loss > {cfg['spike_ratio']} x the median of the "
        f"previous {cfg['spike_window']}.\n"
    )


# ----------------------------------------------------------------------------- plots


def _padded(runs: list[RunResult], steps: int) -> np.ndarray:
    """(runs, steps) pre-clip norms, NaN after a run stopped."""
    out = np.full((len(runs), steps), np.nan)
    for i, r in enumerate(runs):
        out[i, : len(r.grad_norms)] = r.grad_norms[:steps]
    return out


def _runs_at(results: list[RunResult], lr: float, clip: tuple[str, float | None]) -> list:
    return [
        r
        for r in results
        if r.spec["lr"] == lr and (r.spec["clip"], r.spec["clip_threshold"]) == clip
    ]


def _plot_heatmaps(
    ctx: RunContext,
    results: list[RunResult],
    clips: list[tuple[str, float | None]],
    lrs: list[float],
    cfg: dict[str, Any],
) -> None:
    """One row per rate (the edge, the first past it), one column per clipping setting; shared
    log-norm bins and colour scale."""
    plt = pyplot()
    norms = {(lr, c): _padded(_runs_at(results, lr, c), cfg["steps"]) for lr in lrs for c in clips}
    edges = log_edges(np.concatenate([n.ravel() for n in norms.values()]), cfg["hist_bins"])
    counts = {k: histogram_over_time(v, edges, cfg["steps_per_column"]) for k, v in norms.items()}
    top = max(int(c.max()) for c in counts.values())
    fig, axes = plt.subplots(
        len(lrs),
        len(clips),
        figsize=(3.2 * len(clips), 3.2 * len(lrs)),
        sharey=True,
        squeeze=False,
    )
    x_edges = np.arange(0, cfg["steps"] + cfg["steps_per_column"], cfg["steps_per_column"])
    for (row, lr), (col, clip) in itertools.product(enumerate(lrs), enumerate(clips)):
        ax, grid = axes[row, col], counts[(lr, clip)]
        mesh = ax.pcolormesh(
            x_edges[: grid.shape[1] + 1],
            edges,
            np.ma.masked_equal(grid, 0),
            cmap="viridis",
            vmin=1,
            vmax=max(top, 1),
        )
        ax.set_yscale("log")
        ax.set_title(f"lr {lr:g}, clip {clip_label(*clip)}", fontsize=9)
        if clip[0] == "norm":
            ax.axhline(clip[1], color="red", lw=1, ls="--", label="threshold c")
            ax.legend(fontsize=7, loc="lower right")
        if row == len(lrs) - 1:
            ax.set_xlabel("step")
        if col == 0:
            ax.set_ylabel("pre-clip ‖g‖₂ (log)")
    fig.colorbar(mesh, ax=axes, label=f"steps × seeds per bin ({cfg['seeds']} seeds)")
    fig.suptitle(
        f"Pre-clip gradient-norm histograms over time (edge lr {lrs[0]:g} and past it); "
        "white: no steps (a diverged run stops)"
    )
    ctx.savefig(fig, "grad_norm_heatmaps.png")


def _plot_rates(
    ctx: RunContext,
    summary: dict[str, Any],
    clips: list[tuple[str, float | None]],
    study_lrs: list[float],
) -> None:
    plt = pyplot()
    labels = [clip_label(*c) for c in clips]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(study_lrs)
    x = np.arange(len(labels))
    for i, lr in enumerate(study_lrs):
        cells = [summary["table"][label]["per_lr"][str(lr)] for label in labels]
        tag = f"lr {lr:g}" + (" (edge)" if lr == summary["edge_lr"] else "")
        ax1.bar(x + i * width, [c["divergence_rate"] for c in cells], width, label=tag)
        ax2.bar(x + i * width, [c["final_test_loss"] for c in cells], width, label=tag)
    for ax, title in (
        (ax1, "divergence rate over seeds"),
        (ax2, "final test loss (finished runs)"),
    ):
        ax.set_xticks(x + width * (len(study_lrs) - 1) / 2, labels)
        ax.set_xlabel("clipping setting")
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    ax1.set_ylabel("fraction of runs diverged")
    ax2.set_ylabel("cross-entropy (nats); missing bar: all diverged")
    ctx.savefig(fig, "divergence.png")


def _plot_losses(
    ctx: RunContext,
    results: list[RunResult],
    clips: list[tuple[str, float | None]],
    lr: float,
) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for clip in clips:
        color = None
        for r in _runs_at(results, lr, clip):
            (line,) = ax.plot(
                r.train_steps,
                r.train_loss,
                lw=0.8,
                color=color,
                label=clip_label(*clip) if color is None else None,
            )
            color = line.get_color()
            finite = [
                (t, v) for t, v in zip(r.train_steps, r.train_loss, strict=True) if math.isfinite(v)
            ]
            if r.diverged and finite:  # at the last finite loss before the stop
                ax.scatter(*finite[-1], marker="x", color=color)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (log)")
    ax.set_title(f"Training loss at lr {lr:g}, every seed (x: diverged there)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ctx.savefig(fig, "loss_curves.png")
