"""weight_decay_grokking: without weight decay the model memorises (a + b) mod 23 and stays
there: after 500 full-batch steps its test accuracy is below 40% while train accuracy is 100%,
and the same run with weight decay 1 ends higher.

Two runs of layer 7's grokking recipe (:mod:`layer7_research.grokking`) on one seeded split,
identical but for AdamW's weight decay λ ∈ {0, 1}; the metrics are each run's final train and
test accuracy and the gap between the two test accuracies.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from layer0_math.lab import RunContext, pyplot
from layer7_research.grokking import Recipe, split_pairs, train_grokking


@contextlib.contextmanager
def _threads(n: int):
    """``n`` torch threads for the block (0: leave as is); a tiny model waits on a second one."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def experiment(ctx: RunContext) -> dict[str, Any]:
    """λ = 0 vs λ = 1 on the same split and steps: final accuracies and a curve plot."""
    cfg = ctx.config
    split = split_pairs(cfg["p"], cfg["train_fraction"], ctx.seed)
    curves = {}
    with _threads(cfg["threads"]):
        for decay in (0.0, 1.0):
            recipe = Recipe(
                p=cfg["p"], train_fraction=cfg["train_fraction"], d_model=cfg["d_model"],
                d_mlp=cfg["d_mlp"], lr=cfg["lr"], weight_decay=decay, steps=cfg["steps"],
                n_evals=30, seed=ctx.seed,
            )  # fmt: skip
            curves[decay] = train_grokking(recipe, split, progress=True).curves
    _plot(ctx, curves)
    return {
        "train_accuracy_no_decay": curves[0.0].train_accuracy[-1],
        "test_accuracy_no_decay": curves[0.0].test_accuracy[-1],
        "train_accuracy_decay": curves[1.0].train_accuracy[-1],
        "test_accuracy_decay": curves[1.0].test_accuracy[-1],
        "test_accuracy_gain": curves[1.0].test_accuracy[-1] - curves[0.0].test_accuracy[-1],
        "steps": cfg["steps"],
    }


def _plot(ctx: RunContext, curves: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (decay, c), colour in zip(curves.items(), ("C0", "C1"), strict=True):
        ax.plot(c.steps, c.train_accuracy, "--", color=colour, label=f"train, λ = {decay:g}")
        ax.plot(c.steps, c.test_accuracy, color=colour, label=f"test, λ = {decay:g}")
    ax.set_xscale("log")
    ax.set_xlabel("optimizer step (full batch)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"(a + b) mod {ctx.config['p']}: weight decay 0 vs 1")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "accuracy.png")
