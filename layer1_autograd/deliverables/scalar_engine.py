"""scalar_engine: a ValueMLP, where every multiply is a graph node, learns two moons.

2-h-h-1 ReLU network on standardised inputs, max-margin loss plus an L2 penalty, SGD with
momentum at a rate decaying linearly to a tenth, trained by the one loop
(:func:`layer1_autograd.training.fit`); the plot is the decision boundary in the original
coordinates and the training loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from layer0_math.lab import RunContext, deliverable, pyplot
from layer1_autograd.training import ScalarSGD, fit, linear_decay
from layer1_autograd.value import Value
from layer1_autograd.value_nn import ValueMLP, hinge_loss


@deliverable(
    quick={
        "n_train": 200,
        "n_test": 500,
        "noise": 0.1,
        "hidden": 16,
        "steps": 100,
        "batch_size": 32,
        "lr": 0.1,
        "momentum": 0.9,
        "l2": 1e-4,
        "grid": 40,
    },
    full={"n_train": 500, "n_test": 1000, "steps": 500, "batch_size": 64, "grid": 80},
    headline=["accuracy"],
)
def scalar_engine(ctx: RunContext) -> dict[str, Any]:
    """Two moons with a 2-h-h-1 ValueMLP, max-margin loss, SGD + momentum, decaying lr."""
    from sklearn.datasets import make_moons

    cfg = ctx.config
    x, y01 = make_moons(cfg["n_train"] + cfg["n_test"], noise=cfg["noise"], random_state=ctx.seed)
    y = 2 * y01 - 1  # labels ±1 for the hinge loss
    n_tr = cfg["n_train"]
    mean, std = x[:n_tr].mean(axis=0), x[:n_tr].std(axis=0)
    z = (x - mean) / std  # standardised inputs: the plot keeps the original coordinates
    z_tr, y_tr, z_te, y_te = z[:n_tr], y[:n_tr], z[n_tr:], y[n_tr:]
    model = ValueMLP([2, cfg["hidden"], cfg["hidden"], 1], activation="relu", rng=ctx.rng)
    params = model.parameters()
    last: list[Value] = []  # the newest loss graph, for its node count

    def loss_fn(step: int) -> Value:
        idx = ctx.rng.choice(n_tr, cfg["batch_size"], replace=False)
        scores = [model(p.tolist())[0] for p in z_tr[idx]]
        loss = hinge_loss(scores, y_tr[idx].tolist()) + cfg["l2"] * sum(
            (p * p for p in params), Value(0.0)
        )
        last[:] = [loss]
        return loss

    history = fit(
        loss_fn,
        ScalarSGD(params, lr=cfg["lr"], momentum=cfg["momentum"]),
        cfg["steps"],
        schedule=linear_decay(cfg["lr"], cfg["steps"], decay=0.9),
        progress=ctx.progress,
        name="moons",
    )

    def predict(points: np.ndarray) -> np.ndarray:
        # One point at a time, keeping only the float: each graph is freed as soon as it is
        # read, so the heap (and the garbage collector's work) stays small.
        return np.array([model(p.tolist())[0].data for p in points])

    def accuracy(points: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(np.where(predict(points) > 0, 1, -1) == labels))

    test_acc = accuracy(z_te, y_te)
    _plot(ctx, x, y, predict, (mean, std), history.losses, test_acc)
    return {
        "accuracy": test_acc,
        "train_accuracy": accuracy(z_tr, y_tr),
        "final_loss": float(np.mean(history.losses[-10:])),
        "n_params": len(params),
        "graph_nodes_per_step": len(last[0].topological_order()),
    }


def _plot(
    ctx: RunContext,
    x: np.ndarray,
    y: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    standardise: tuple[np.ndarray, np.ndarray],
    losses: list[float],
    test_acc: float,
) -> None:
    """Decision boundary over a grid in the original coordinates, and the training loss."""
    plt = pyplot()
    cfg, n_tr = ctx.config, ctx.config["n_train"]
    mean, std = standardise
    lo, hi = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], cfg["grid"]), np.linspace(lo[1], hi[1], cfg["grid"])
    )
    grid_scores = predict((np.c_[gx.ravel(), gy.ravel()] - mean) / std).reshape(gx.shape)
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax.contourf(gx, gy, grid_scores > 0, levels=1, cmap="RdBu", alpha=0.35)
    ax.contour(gx, gy, grid_scores, levels=[0.0], colors="k", linewidths=1)
    ax.scatter(
        x[:n_tr, 0], x[:n_tr, 1], c=y[:n_tr], cmap="RdBu", s=14, edgecolors="k", lw=0.4,
        label="train",
    )  # fmt: skip
    ax.scatter(x[n_tr:, 0], x[n_tr:, 1], c=y[n_tr:], cmap="RdBu", s=10, marker="x", label="test")
    ax.set_title(f"Value MLP decision boundary (test accuracy {test_acc:.3f})")
    ax.legend(loc="lower left")
    ax_loss.plot(losses)
    ax_loss.set(title="training loss (hinge + L2)", xlabel="step", yscale="log")
    ctx.savefig(fig, "decision_boundary.png")
