"""mlp_manual_backprop: the hand-derived MLP learns MNIST; its gradients equal the engine's.

784-h-h-10 ReLU network whose backward pass is written out by hand
(:mod:`layer1_autograd.manual_mlp`), trained by the one loop with SGD + momentum and a cosine
rate: its :class:`~layer1_autograd.training.HandGradients` loss hands the hand-derived
gradients to the optimizer. Validation and training accuracy after every epoch, the test
accuracy at the end, and the largest difference from the tensor engine's gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layer0_math.classification import accuracy
from layer0_math.lab import RunContext, deliverable, pyplot
from layer1_autograd.gradcheck import grad_difference
from layer1_autograd.manual_mlp import ManualMLP
from layer1_autograd.mnist import flat_mnist
from layer1_autograd.nn import SGD
from layer1_autograd.tensor import Tensor
from layer1_autograd.training import EpochShuffler, HandGradients, History, cosine, fit


@deliverable(
    quick={
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
    },
    full={"hidden": 512, "epochs": 20},
    headline=["test_accuracy", "grad_max_abs_diff"],
)
def mlp_manual_backprop(ctx: RunContext) -> dict[str, Any]:
    """784-h-h-10 ReLU MLP with the hand-written backward pass, SGD + momentum, cosine lr.

    ``n_train``/``n_test`` = 0 means all examples.
    """
    cfg = ctx.config
    d = flat_mnist(ctx.rng, n_val=cfg["n_val"], n_train=cfg["n_train"], n_test=cfg["n_test"])
    model = ManualMLP.init((784, cfg["hidden"], cfg["hidden"], 10), rng=ctx.rng)
    # The one SGD: the parameter arrays wrapped as tensors (sharing memory) that it updates.
    tensors = {name: Tensor(a, requires_grad=True) for name, a in model.params.items()}
    shuffle = EpochShuffler(len(d.x_train), cfg["batch_size"], ctx.rng)
    total = cfg["epochs"] * shuffle.steps_per_epoch
    sub = slice(0, len(d.x_val))  # training accuracy on as many examples as validation

    def loss_fn(step: int) -> HandGradients:
        idx = shuffle.indices(step)
        return HandGradients(*model.loss_and_grads(d.x_train[idx], d.y_train[idx]), tensors)

    def evaluate(done: int) -> dict[str, float]:
        return {
            "val_accuracy": accuracy(d.y_val, model.predict(d.x_val)),
            "train_accuracy": accuracy(d.y_train[sub], model.predict(d.x_train[sub])),
        }

    history = fit(
        loss_fn,
        SGD(list(tensors.values()), lr=cfg["lr"], momentum=cfg["momentum"]),
        total,
        schedule=cosine(cfg["lr"], total),
        evaluate=evaluate,
        eval_every=shuffle.steps_per_epoch,
        progress=ctx.progress,
        name="mnist mlp",
    )
    test_acc = accuracy(d.y_test, model.predict(d.x_test))
    check = slice(0, cfg["grad_check_batch"])
    diff = grad_difference(model, d.x_val[check], d.y_val[check])
    _plot_curves(ctx, history, shuffle.steps_per_epoch, test_acc)
    ctx.save_arrays(
        "model.safetensors",
        model.params,
        meta={
            "sizes": list(model.sizes),
            "activation": "relu",
            "layout": "weight (out, in), y = x @ weight.T + bias",
            "input": "x/255 flattened to 784, then (x - mean) / std",
            "mean": d.mean,
            "std": d.std,
            "test_accuracy": test_acc,
        },
    )
    last = history.evals[-1]
    return {
        "test_accuracy": test_acc,
        "val_accuracy": last["val_accuracy"],
        "train_accuracy": last["train_accuracy"],
        "final_train_loss": last["train_loss"],
        "grad_max_abs_diff": diff,
        "n_train": len(d.x_train),
        "steps": total,
    }


def _plot_curves(ctx: RunContext, history: History, steps_per_epoch: int, test_acc: float) -> None:
    """Loss per step and per epoch; training and validation accuracy per epoch."""
    plt = pyplot()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(history.evals) + 1)
    steps = np.arange(len(history.losses)) / steps_per_epoch
    ax_l.plot(steps, history.losses, lw=0.5, alpha=0.5, label="per step")
    ax_l.plot(epochs, history.column("train_loss"), "o-", label="epoch mean")
    ax_l.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="training loss")
    ax_l.legend()
    ax_a.plot(epochs, history.column("train_accuracy"), "o-", label="train")
    ax_a.plot(epochs, history.column("val_accuracy"), "o-", label="validation")
    ax_a.axhline(test_acc, color="k", ls="--", lw=1, label=f"test (final) {test_acc:.4f}")
    ax_a.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_a.legend()
    ctx.savefig(fig, "curves.png")
