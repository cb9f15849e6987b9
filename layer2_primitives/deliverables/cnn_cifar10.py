"""cnn_cifar10: CifarCNN learns CIFAR-10 with crop/flip augmentation, on the one loop.

SGD + momentum + weight decay at a one-cycle rate; every ``eval_every`` steps the training
accuracy since the last evaluation and the accuracy on a fixed random subset of the test set;
at the end the accuracy on the FULL 10,000-image test set and its confusion matrix. Saves
``model.safetensors`` (parameters and batch-norm buffers under torch's names) with the input
normalisation and class names in its sidecar.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from layer0_math.classification import confusion_matrix
from layer0_math.datasets import CIFAR10_CLASSES
from layer0_math.lab import RunContext, deliverable, pyplot
from layer1_autograd import SGD, F, Tensor
from layer1_autograd.training import EpochShuffler, History, fit, one_cycle
from layer2_primitives.models import CifarCNN
from layer2_primitives.state import state_arrays
from layer2_primitives.training import cifar10_normalized, predict_batched, random_crop_flip


@dataclass
class CnnConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    train_subset: int = 50000
    eval_batch: int = 1000
    eval_every: int = 100
    eval_subset: int = 2000
    blas_threads: int = 1


@deliverable(
    quick=asdict(CnnConfig()),
    full={"widths": [64, 128, 256], "epochs": 30, "lr": 0.05, "eval_every": 1000},
    headline=["test_accuracy"],
)
def cnn_cifar10(ctx: RunContext) -> dict[str, float]:
    cfg = CnnConfig(**ctx.config)
    cpu0 = time.process_time()
    data = cifar10_normalized()
    order = ctx.rng.permutation(len(data.x_train))[: cfg.train_subset]  # train split is unsorted
    x_train, y_train = data.x_train[order], data.y_train[order]
    model = CifarCNN(cfg.widths, rng=ctx.rng)
    # the test set is sorted by class: a random fixed subset tracks accuracy during training
    probe = ctx.rng.permutation(len(data.x_test))[: cfg.eval_subset]
    shuffle = EpochShuffler(len(x_train), cfg.batch_size, ctx.rng, drop_last=True)
    total = cfg.epochs * shuffle.steps_per_epoch
    window = {"correct": 0, "seen": 0}  # training accuracy since the last evaluation

    def loss_fn(step: int) -> Tensor:
        model.train()
        idx = shuffle.indices(step)
        logits = model(Tensor(random_crop_flip(x_train[idx], ctx.rng)))
        window["correct"] += int((logits.data.argmax(axis=1) == y_train[idx]).sum())
        window["seen"] += len(idx)
        return F.cross_entropy(logits, y_train[idx])

    def evaluate(done: int) -> dict[str, float]:
        model.eval()
        pred = predict_batched(model, data.x_test[probe], cfg.eval_batch).argmax(axis=1)
        record = {
            "train_acc": window["correct"] / window["seen"],
            "test_acc_subset": float((pred == data.y_test[probe]).mean()),
        }
        window.update(correct=0, seen=0)
        return record

    opt = SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    history = fit(
        loss_fn,
        opt,
        total,
        schedule=one_cycle(cfg.lr, total),
        evaluate=evaluate,
        eval_every=cfg.eval_every,
        progress=ctx.progress,
        name="cnn_cifar10",
    )
    model.eval()
    pred = predict_batched(model, data.x_test, cfg.eval_batch).argmax(axis=1)  # the FULL test set
    test_accuracy = float((pred == data.y_test).mean())
    _plot_curves(ctx, history)
    _plot_confusion(ctx, confusion_matrix(data.y_test, pred, 10))
    meta = {
        "architecture": "CifarCNN",
        "widths": list(cfg.widths),
        "in_channels": 3,
        "num_classes": 10,
        "image_size": 32,
        "normalize_mean": data.mean.tolist(),
        "normalize_std": data.std.tolist(),
        "classes": list(CIFAR10_CLASSES),
        "test_accuracy": test_accuracy,
    }
    ctx.save_arrays("model.safetensors", state_arrays(model), meta=meta)
    ctx.write_json(
        "history.json",
        {
            "step_loss": history.losses,
            "eval_step": history.column("step"),
            "train_acc": history.column("train_acc"),
            "test_acc_subset": history.column("test_acc_subset"),
        },
    )
    return {
        "test_accuracy": test_accuracy,
        "train_accuracy_last_window": history.evals[-1]["train_acc"],
        "final_train_loss": float(np.mean(history.losses[-50:])),
        "epochs": cfg.epochs,
        "train_images": len(x_train),
        "cpu_seconds": time.process_time() - cpu0,
    }


def _plot_curves(ctx: RunContext, history: History) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    loss = np.asarray(history.losses)
    window = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    ax1.plot(loss, alpha=0.3, label="per step")
    ax1.plot(np.arange(len(smooth)) + window - 1, smooth, label=f"mean of {window}")
    ax1.set(xlabel="step", ylabel="cross-entropy", title="training loss")
    ax1.legend()
    steps = history.column("step")
    ax2.plot(steps, history.column("train_acc"), "o-", label="train (augmented, since last point)")
    ax2.plot(steps, history.column("test_acc_subset"), "o-", label="test (fixed random subset)")
    ax2.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    ax2.legend()
    ctx.savefig(fig, "curves.png")


def _plot_confusion(ctx: RunContext, confusion: np.ndarray) -> None:
    """Row-normalised confusion matrix of the full test set."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    rates = confusion / confusion.sum(axis=1, keepdims=True)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(10), CIFAR10_CLASSES, rotation=60)
    ax.set_yticks(range(10), CIFAR10_CLASSES)
    ax.set(xlabel="predicted", ylabel="true", title="test confusion (row-normalised)")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im)
    ctx.savefig(fig, "confusion_matrix.png")
