"""gradient_flow: vanishing and exploding gradients, a drawn graph, loss-landscape slices.

On sklearn's digits: per-layer gradient norms of a deep MLP for every activation (sigmoid,
tanh, ReLU) × initialisation (small N(0, 0.01²), naive N(0, 1), He) while it trains
(:mod:`layer1_autograd.gradient_flow`); one tanh neuron differentiated and drawn; and 1-D and
2-D slices of the loss through a trained MLP along filter-normalised directions
(:mod:`layer1_autograd.landscape`). Metrics are named ``<measure>_<activation>_<init>``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layer0_math.lab import RunContext, deliverable, pyplot
from layer1_autograd import functional as F
from layer1_autograd.draw import draw_graph, to_dot
from layer1_autograd.gradient_flow import (
    INITS,
    FlowRecord,
    record_gradient_flow,
    standardised_digits,
)
from layer1_autograd.landscape import filter_normalized_direction, slice_1d, slice_2d
from layer1_autograd.nn import MLP, SGD
from layer1_autograd.tensor import Tensor, no_grad
from layer1_autograd.training import fit
from layer1_autograd.value import Value

ACTIVATIONS = ("sigmoid", "tanh", "relu")
Records = dict[tuple[str, str], FlowRecord]


@deliverable(
    quick={
        "depth": 12,
        "width": 64,
        "steps": 150,
        "lr": 0.01,
        "batch_size": 128,
        "landscape_steps": 400,
        "landscape_points": 41,
        "landscape_grid": 21,
        "blas_threads": 1,
    },
    full={
        "depth": 20,
        "width": 128,
        "steps": 1000,
        "landscape_steps": 2000,
        "landscape_points": 81,
        "landscape_grid": 41,
    },
    headline=["ratio_sigmoid_he", "grad_norm_first_relu_naive", "ratio_relu_he"],
)
def gradient_flow(ctx: RunContext) -> dict[str, Any]:
    """Vanishing/exploding gradients, a drawn graph, and loss-landscape slices (sklearn digits)."""
    x, y = standardised_digits()
    records = _record_all(ctx, x, y)
    metrics = _flow_metrics(records)
    _plot_norms_by_layer(ctx, records)
    _plot_norms_over_training(ctx, records)
    _plot_losses(ctx, records)
    ctx.write_json("grad_norms.json", {f"{a}/{i}": r.norms for (a, i), r in records.items()})
    _draw_neuron(ctx)
    metrics.update(_landscape(ctx, x, y))
    return metrics


def _record_all(ctx: RunContext, x: np.ndarray, y: np.ndarray) -> Records:
    cfg = ctx.config
    records: Records = {}
    settings = [(a, i) for a in ACTIVATIONS for i in INITS]
    for act, init in ctx.progress(settings, desc="settings"):
        records[act, init] = record_gradient_flow(
            x,
            y,
            depth=cfg["depth"],
            width=cfg["width"],
            activation=act,
            init=init,
            steps=cfg["steps"],
            lr=cfg["lr"],
            batch_size=cfg["batch_size"],
            rng=ctx.rng,
        )
    return records


def _flow_metrics(records: Records) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for (act, init), rec in records.items():
        metrics[f"ratio_{act}_{init}"] = rec.first_to_last_ratio(0)
        metrics[f"grad_norm_first_{act}_{init}"] = float(rec.norms[0, 0])
        metrics[f"final_loss_{act}_{init}"] = rec.losses[-1]
        metrics[f"steps_{act}_{init}"] = len(rec.losses)  # fewer than cfg["steps"]: diverged
    return metrics


def _plot_norms_by_layer(ctx: RunContext, records: Records) -> None:
    """Per-layer norms at initialisation: one panel per activation, one line per init."""
    plt = pyplot()
    n = len(ACTIVATIONS)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), sharey=True)
    for ax, act in zip(axes, ACTIVATIONS, strict=True):
        for init in INITS:
            norms = records[act, init].norms
            ax.plot(np.arange(1, norms.shape[1] + 1), norms[0], "o-", label=init)
        ax.set(title=f"{act}: ‖∂L/∂W_l‖ at step 0", xlabel="layer l (input → output)", yscale="log")
        ax.legend()
    axes[0].set_ylabel("gradient norm (log)")
    ctx.savefig(fig, "grad_norms_by_layer.png")


def _plot_norms_over_training(ctx: RunContext, records: Records) -> None:
    """log10 ‖∂L/∂W_l‖ over steps × layers, every setting; the first and last layer labelled."""
    plt = pyplot()
    rows, cols = len(ACTIVATIONS), len(INITS)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for i, act in enumerate(ACTIVATIONS):
        for j, init in enumerate(INITS):
            ax, norms = axes[i, j], records[act, init].norms
            ax.imshow(
                np.log10(norms.T + 1e-300),
                aspect="auto",
                origin="lower",
                cmap="viridis",
                interpolation="nearest",
            )
            stopped = (
                "" if len(norms) == ctx.config["steps"] else f" (diverged: {len(norms)} steps)"
            )
            ax.set(title=f"{act} / {init}: log10 ‖∂L/∂W_l‖{stopped}", xlabel="step", ylabel="layer")
            for k in (0, norms.shape[1] - 1):
                ax.text(
                    0.98,
                    (k + 0.5) / norms.shape[1],
                    f"L{k + 1}: {norms[-1, k]:.1e}",
                    transform=ax.transAxes,
                    ha="right",
                    va="center",
                    fontsize=7,
                    color="w",
                )
    fig.tight_layout()
    ctx.savefig(fig, "grad_norms_over_training.png")


def _plot_losses(ctx: RunContext, records: Records) -> None:
    plt = pyplot()
    n = len(ACTIVATIONS)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), sharey=True)
    for ax, act in zip(axes, ACTIVATIONS, strict=True):
        for init in INITS:
            ax.plot(records[act, init].losses, label=init)
        ax.set(title=f"{act}: training loss", xlabel="step", yscale="log")
        ax.legend()
    ctx.savefig(fig, "losses.png")


def _draw_neuron(ctx: RunContext) -> None:
    """A small expression, differentiated and drawn: one tanh neuron."""
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2, b = Value(-3.0, label="w1"), Value(1.0, label="w2"), Value(6.8813735870195, label="b")
    out = (x1 * w1 + x2 * w2 + b).tanh()
    out.label = "out"
    out.backward()
    ctx.write_text("graph.dot", to_dot(out, name="neuron"))
    ctx.savefig(
        draw_graph(out, title="out = tanh(x1·w1 + x2·w2 + b), after backward()"), "graph.png"
    )


def _landscape(ctx: RunContext, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Train a 64-64-10 ReLU MLP, then slice its loss through the trained weights θ*."""
    cfg = ctx.config
    model = MLP([x.shape[1], 64, 64, 10], activation="relu", rng=ctx.rng, dtype=np.float64)

    def loss_fn(step: int) -> Tensor:
        idx = ctx.rng.integers(0, len(x), 128)
        return F.cross_entropy(model(Tensor(x[idx])), y[idx])

    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    fit(loss_fn, opt, cfg["landscape_steps"], progress=ctx.progress, name="landscape model")
    theta = model.state_dict()

    def loss_at(params: dict[str, np.ndarray]) -> float:
        model.load_state_dict(params)
        with no_grad():
            return F.cross_entropy(model(Tensor(x)), y).item()

    d1, d2 = (filter_normalized_direction(theta, ctx.rng) for _ in range(2))
    alphas = np.linspace(-1.0, 1.0, cfg["landscape_points"])
    line = slice_1d(loss_at, theta, d1, alphas)
    grid = np.linspace(-1.0, 1.0, cfg["landscape_grid"])
    surface = slice_2d(loss_at, theta, d1, d2, grid, grid)
    model.load_state_dict(theta)
    _plot_landscape(ctx, alphas, line, grid, surface)
    ctx.write_json(
        "loss_landscape.json",
        {"alphas": alphas, "slice_1d": line, "grid": grid, "slice_2d": surface},
    )
    return {
        "landscape_center_loss": float(line[len(line) // 2]),
        "landscape_loss_at_unit_step": float((line[0] + line[-1]) / 2),
    }


def _plot_landscape(
    ctx: RunContext, alphas: np.ndarray, line: np.ndarray, grid: np.ndarray, surface: np.ndarray
) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.plot(alphas, line, "o-", ms=3)
    ax1.set(
        xlabel="α",
        ylabel="training loss",
        yscale="log",
        title="1-D slice L(θ* + α d), filter-normalised d",
    )
    levels = np.logspace(np.log10(surface.min()), np.log10(surface.max()), 20)
    cs = ax2.contour(grid, grid, surface, levels=levels, cmap="viridis")
    ax2.clabel(cs, fontsize=6, fmt="%.2g")
    ax2.plot(0, 0, "r*", ms=10)
    ax2.set(xlabel="α (d₁)", ylabel="β (d₂)", title="2-D slice L(θ* + α d₁ + β d₂)")
    ctx.savefig(fig, "loss_landscape.png")
