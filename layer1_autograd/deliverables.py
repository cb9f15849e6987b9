"""Layer 1 deliverables: ``python -m layer1_autograd`` (``make layer1``) runs them in this order.

- ``scalar_engine``: a ValueMLP (every multiply a graph node) learns two moons; decision boundary.
- ``mlp_manual_backprop``: the hand-derived MLP learns MNIST; its gradients equal the engine's.
- ``gradient_flow``: per-layer gradient norms for sigmoid/tanh/ReLU × initialisations in a deep MLP,
  a drawn computation graph, and filter-normalised loss-landscape slices.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layer0_math.datasets import load_digits, load_mnist
from layer0_math.lab import RunContext, deliverable
from layer1_autograd import functional as F
from layer1_autograd.draw import draw_graph, to_dot
from layer1_autograd.gradient_flow import INITS, record_gradient_flow
from layer1_autograd.landscape import filter_normalized_direction, slice_1d, slice_2d
from layer1_autograd.manual_mlp import ManualMLP
from layer1_autograd.nn import MLP, SGD
from layer1_autograd.tensor import Tensor, no_grad
from layer1_autograd.value import Value
from layer1_autograd.value_nn import ValueMLP, hinge_loss


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` to 0 over ``total`` steps."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total))


# ------------------------------------------------------------------------------ scalar engine
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
    full={
        "n_train": 500,
        "n_test": 1000,
        "noise": 0.1,
        "hidden": 16,
        "steps": 500,
        "batch_size": 64,
        "lr": 0.1,
        "momentum": 0.9,
        "l2": 1e-4,
        "grid": 80,
    },
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
    velocity = [0.0] * len(params)

    def scores(points: np.ndarray) -> list[Value]:
        return [model(p.tolist())[0] for p in points]

    def predict(points: np.ndarray) -> np.ndarray:
        # One point at a time, keeping only the float: each graph is freed as soon as it is
        # read, so the heap (and the garbage collector's work) stays small.
        return np.array([model(p.tolist())[0].data for p in points])

    losses = []
    for step in ctx.progress(range(cfg["steps"]), desc="moons"):
        idx = ctx.rng.choice(n_tr, cfg["batch_size"], replace=False)
        data_loss = hinge_loss(scores(z_tr[idx]), y_tr[idx].tolist())
        loss = data_loss + cfg["l2"] * sum((p * p for p in params), Value(0.0))
        model.zero_grad()
        loss.backward()
        lr = cfg["lr"] * (1.0 - 0.9 * step / cfg["steps"])
        for i, p in enumerate(params):  # v ← μv + g, θ ← θ − ηv (as nn.SGD, on scalars)
            velocity[i] = cfg["momentum"] * velocity[i] + p.grad
            p.data -= lr * velocity[i]
        losses.append(loss.data)

    def accuracy(points: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(np.where(predict(points) > 0, 1, -1) == labels))

    test_acc, train_acc = accuracy(z_te, y_te), accuracy(z_tr, y_tr)

    plt = _plt()
    lo, hi = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], cfg["grid"]), np.linspace(lo[1], hi[1], cfg["grid"])
    )
    grid_scores = predict((np.c_[gx.ravel(), gy.ravel()] - mean) / std)
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax.contourf(gx, gy, grid_scores.reshape(gx.shape) > 0, levels=1, cmap="RdBu", alpha=0.35)
    ax.contour(gx, gy, grid_scores.reshape(gx.shape), levels=[0.0], colors="k", linewidths=1)
    ax.scatter(
        x[:n_tr, 0], x[:n_tr, 1], c=y_tr, cmap="RdBu", s=14, edgecolors="k", lw=0.4, label="train"
    )
    ax.scatter(x[n_tr:, 0], x[n_tr:, 1], c=y_te, cmap="RdBu", s=10, marker="x", label="test")
    ax.set_title(f"Value MLP decision boundary (test accuracy {test_acc:.3f})")
    ax.legend(loc="lower left")
    ax_loss.plot(losses)
    ax_loss.set(title="training loss (hinge + L2)", xlabel="step", yscale="log")
    ctx.savefig(fig, "decision_boundary.png")
    return {
        "accuracy": test_acc,
        "train_accuracy": train_acc,
        "final_loss": float(np.mean(losses[-10:])),
        "n_params": len(params),
        "graph_nodes_per_step": len(loss.topological_order()),
    }


# ------------------------------------------------------------------------ manual backprop MNIST
def _mnist_arrays(cfg: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Flattened, normalised MNIST with a held-out validation split taken from train."""
    x, y = load_mnist("train")
    x_test, y_test = load_mnist("test")
    perm = rng.permutation(len(x))
    val_idx, train_idx = perm[: cfg["n_val"]], perm[cfg["n_val"] :]
    if cfg["n_train"]:
        train_idx = train_idx[: cfg["n_train"]]
    if cfg["n_test"]:
        x_test, y_test = x_test[: cfg["n_test"]], y_test[: cfg["n_test"]]
    x_train = x[train_idx].reshape(len(train_idx), -1).astype(np.float32) / 255.0  # (N, 784)
    mean, std = float(x_train.mean()), float(x_train.std())

    def prep(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1).astype(np.float32) / 255.0 - mean) / std

    return {
        "x_train": (x_train - mean) / std,
        "y_train": y[train_idx],
        "x_val": prep(x[val_idx]),
        "y_val": y[val_idx],
        "x_test": prep(x_test),
        "y_test": y_test,
        "mean": np.float32(mean),
        "std": np.float32(std),
    }


def grad_difference(model: ManualMLP, x: np.ndarray, y: np.ndarray) -> float:
    """max |manual − tensor engine| over all parameter gradients, in float64."""
    manual = ManualMLP({n: a.astype(np.float64) for n, a in model.params.items()})
    _, grads = manual.loss_and_grads(x.astype(np.float64), y)
    engine = MLP(manual.sizes, rng=np.random.default_rng(0), dtype=np.float64)
    engine.load_state_dict(manual.params)
    F.cross_entropy(engine(Tensor(x.astype(np.float64))), y).backward()
    return max(float(np.abs(p.grad - grads[n]).max()) for n, p in engine.named_parameters())


MLP_QUICK = {
    "hidden": 256,
    "epochs": 8,
    "batch_size": 128,
    "lr": 0.05,
    "momentum": 0.9,
    "n_val": 5000,
    "n_train": 0,
    "n_test": 0,
    "grad_check_batch": 100,
    "blas_threads": 1,
}


@deliverable(
    quick=MLP_QUICK,
    full={**MLP_QUICK, "hidden": 512, "epochs": 20},
    headline=["test_accuracy", "grad_max_abs_diff"],
)
def mlp_manual_backprop(ctx: RunContext) -> dict[str, Any]:
    """784-h-h-10 ReLU MLP with the hand-written backward pass, SGD + momentum, cosine lr.

    ``n_train``/``n_test`` = 0 means all examples.
    """
    return _train_manual_mlp(ctx)


def _train_manual_mlp(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    d = _mnist_arrays(cfg, ctx.rng)
    n = len(d["x_train"])
    model = ManualMLP.init((784, cfg["hidden"], cfg["hidden"], 10), rng=ctx.rng)
    # The one SGD: wrap the parameter arrays as tensors (sharing memory) and hand it the grads.
    tensors = {name: Tensor(a, requires_grad=True) for name, a in model.params.items()}
    opt = SGD(list(tensors.values()), lr=cfg["lr"], momentum=cfg["momentum"])
    steps_per_epoch = math.ceil(n / cfg["batch_size"])
    total = cfg["epochs"] * steps_per_epoch
    step_losses, epoch_losses, val_acc, train_acc = [], [], [], []
    step = 0
    for _ in ctx.progress(range(cfg["epochs"]), desc="epochs"):
        perm = ctx.rng.permutation(n)
        for i in range(0, n, cfg["batch_size"]):
            idx = perm[i : i + cfg["batch_size"]]
            loss, grads = model.loss_and_grads(d["x_train"][idx], d["y_train"][idx])
            if not np.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss {loss} at step {step}")
            for name, g in grads.items():
                tensors[name].grad = g
            opt.lr = _cosine_lr(cfg["lr"], step, total)
            opt.step()
            step_losses.append(loss)
            step += 1
        epoch_losses.append(float(np.mean(step_losses[-steps_per_epoch:])))
        val_acc.append(float(np.mean(model.predict(d["x_val"]) == d["y_val"])))
        sub = slice(0, len(d["x_val"]))  # training accuracy on as many examples as validation
        train_acc.append(float(np.mean(model.predict(d["x_train"][sub]) == d["y_train"][sub])))
    test_acc = float(np.mean(model.predict(d["x_test"]) == d["y_test"]))
    check = slice(0, cfg["grad_check_batch"])
    diff = grad_difference(model, d["x_val"][check], d["y_val"][check])

    plt = _plt()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    ax_l.plot(
        np.arange(len(step_losses)) / steps_per_epoch,
        step_losses,
        lw=0.5,
        alpha=0.5,
        label="per step",
    )
    ax_l.plot(np.arange(1, cfg["epochs"] + 1), epoch_losses, "o-", label="epoch mean")
    ax_l.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="training loss")
    ax_l.legend()
    epochs = np.arange(1, cfg["epochs"] + 1)
    ax_a.plot(epochs, train_acc, "o-", label="train")
    ax_a.plot(epochs, val_acc, "o-", label="validation")
    ax_a.axhline(test_acc, color="k", ls="--", lw=1, label=f"test (final) {test_acc:.4f}")
    ax_a.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_a.legend()
    ctx.savefig(fig, "curves.png")
    ctx.save_arrays(
        "model.safetensors",
        model.params,
        meta={
            "sizes": list(model.sizes),
            "activation": "relu",
            "layout": "weight (out, in), y = x @ weight.T + bias",
            "input": "x/255 flattened to 784, then (x - mean) / std",
            "mean": float(d["mean"]),
            "std": float(d["std"]),
            "test_accuracy": test_acc,
        },
    )
    return {
        "test_accuracy": test_acc,
        "val_accuracy": val_acc[-1],
        "train_accuracy": train_acc[-1],
        "final_train_loss": epoch_losses[-1],
        "grad_max_abs_diff": diff,
        "n_train": n,
        "steps": total,
    }


# ------------------------------------------------------------------------------ gradient flow
def _digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits()
    x = x.reshape(len(x), -1).astype(np.float64) / 16.0  # (1797, 64)
    return (x - x.mean()) / x.std(), y


def _plot_gradient_flow(
    ctx: RunContext, records: dict[tuple[str, str], Any], activations: tuple[str, ...]
) -> None:
    plt = _plt()
    # Per-layer norms at initialisation: one panel per activation, one line per init.
    fig, axes = plt.subplots(1, len(activations), figsize=(5 * len(activations), 4), sharey=True)
    for ax, act in zip(axes, activations, strict=True):
        for init in INITS:
            norms = records[act, init].norms
            ax.plot(np.arange(1, norms.shape[1] + 1), norms[0], "o-", label=init)
        ax.set(title=f"{act}: ‖∂L/∂W_l‖ at step 0", xlabel="layer l (input → output)", yscale="log")
        ax.legend()
    axes[0].set_ylabel("gradient norm (log)")
    ctx.savefig(fig, "grad_norms_by_layer.png")

    # Over training: first and last layer, every setting.
    fig, axes = plt.subplots(
        len(activations),
        len(INITS),
        figsize=(4.2 * len(INITS), 3.2 * len(activations)),
        squeeze=False,
    )
    for i, act in enumerate(activations):
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

    fig, axes = plt.subplots(1, len(activations), figsize=(5 * len(activations), 3.6), sharey=True)
    for ax, act in zip(axes, activations, strict=True):
        for init in INITS:
            ax.plot(records[act, init].losses, label=init)
        ax.set(title=f"{act}: training loss", xlabel="step", yscale="log")
        ax.legend()
    ctx.savefig(fig, "losses.png")


def _landscape(ctx: RunContext, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    cfg = ctx.config
    model = MLP([x.shape[1], 64, 64, 10], activation="relu", rng=ctx.rng, dtype=np.float64)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in ctx.progress(range(cfg["landscape_steps"]), desc="landscape model"):
        idx = ctx.rng.integers(0, len(x), 128)
        opt.zero_grad()
        F.cross_entropy(model(Tensor(x[idx])), y[idx]).backward()
        opt.step()
    theta = model.state_dict()

    def loss_fn(params: dict[str, np.ndarray]) -> float:
        model.load_state_dict(params)
        with no_grad():
            return F.cross_entropy(model(Tensor(x)), y).item()

    d1, d2 = (filter_normalized_direction(theta, ctx.rng) for _ in range(2))
    alphas = np.linspace(-1.0, 1.0, cfg["landscape_points"])
    line = slice_1d(loss_fn, theta, d1, alphas)
    grid = np.linspace(-1.0, 1.0, cfg["landscape_grid"])
    surface = slice_2d(loss_fn, theta, d1, d2, grid, grid)
    model.load_state_dict(theta)

    plt = _plt()
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
    ctx.write_json(
        "loss_landscape.json",
        {"alphas": alphas, "slice_1d": line, "grid": grid, "slice_2d": surface},
    )
    center = float(line[len(line) // 2])
    return {
        "landscape_center_loss": center,
        "landscape_loss_at_unit_step": float((line[0] + line[-1]) / 2),
    }


FLOW_QUICK = {
    "depth": 12,
    "width": 64,
    "steps": 150,
    "lr": 0.01,
    "batch_size": 128,
    "landscape_steps": 400,
    "landscape_points": 41,
    "landscape_grid": 21,
    "blas_threads": 1,
}


@deliverable(
    quick=FLOW_QUICK,
    full={
        **FLOW_QUICK,
        "depth": 20,
        "width": 128,
        "steps": 1000,
        "landscape_steps": 2000,
        "landscape_points": 81,
        "landscape_grid": 41,
    },
    headline=["ratio_sigmoid_he", "grad_norm_first_relu_naive_large", "ratio_relu_he"],
)
def gradient_flow(ctx: RunContext) -> dict[str, Any]:
    """Vanishing/exploding gradients, a drawn graph, and loss-landscape slices (sklearn digits)."""
    return _gradient_flow(ctx)


def _gradient_flow(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    x, y = _digits()
    activations = ("sigmoid", "tanh", "relu")
    records = {}
    metrics: dict[str, Any] = {}
    settings = [(a, i) for a in activations for i in INITS]
    for act, init in ctx.progress(settings, desc="settings"):
        rec = record_gradient_flow(
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
        records[act, init] = rec
        metrics[f"ratio_{act}_{init}"] = rec.first_to_last_ratio(0)
        metrics[f"grad_norm_first_{act}_{init}"] = float(rec.norms[0, 0])
        metrics[f"final_loss_{act}_{init}"] = rec.losses[-1]
        metrics[f"steps_{act}_{init}"] = len(rec.losses)  # fewer than cfg["steps"]: diverged
    _plot_gradient_flow(ctx, records, activations)
    ctx.write_json("grad_norms.json", {f"{a}/{i}": r.norms for (a, i), r in records.items()})

    # A small expression, differentiated and drawn: one tanh neuron.
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2, b = Value(-3.0, label="w1"), Value(1.0, label="w2"), Value(6.8813735870195, label="b")
    out = (x1 * w1 + x2 * w2 + b).tanh()
    out.label = "out"
    out.backward()
    ctx.write_text("graph.dot", to_dot(out, name="neuron"))
    ctx.savefig(
        draw_graph(out, title="out = tanh(x1·w1 + x2·w2 + b), after backward()"), "graph.png"
    )

    metrics.update(_landscape(ctx, x, y))
    return metrics
