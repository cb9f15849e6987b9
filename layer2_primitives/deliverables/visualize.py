"""visualize: what the CNN's first layer sees, and the attention pattern that reverses a sequence.

The first-layer filters and feature maps of the CNN that ``cnn_cifar10`` saved (loaded from its
run as an artifact, never re-trained), and the attention of a one-layer
:class:`~layer2_primitives.models.ReversalAttention` trained on the reversal task
(:mod:`layer2_primitives.reversal`): its weight on the anti-diagonal is the headline.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from layer0_math.datasets import load_cifar10
from layer0_math.lab import RunContext, deliverable, load_arrays, pyplot
from layer1_autograd import Tensor, no_grad
from layer2_primitives.models import CifarCNN, ReversalAttention
from layer2_primitives.reversal import attention_diagonal_mass, train_reversal
from layer2_primitives.state import load_state_arrays
from layer2_primitives.training import normalize_channels


@dataclass
class VisualizeConfig:
    num_images: int = 4
    num_maps: int = 8
    attn_steps: int = 600
    attn_seq_len: int = 8
    attn_vocab: int = 10
    attn_embed: int = 32
    attn_batch: int = 64
    attn_lr: float = 0.1
    blas_threads: int = 1


@deliverable(
    quick=asdict(VisualizeConfig()),
    full={"attn_steps": 2000},
    headline=["attention_diagonal_mass"],
)
def visualize(ctx: RunContext) -> dict[str, float]:
    cfg = VisualizeConfig(**ctx.config)
    cpu0 = time.process_time()
    _cnn_first_stage(ctx, cfg)
    model = ReversalAttention(cfg.attn_vocab, cfg.attn_seq_len, cfg.attn_embed, rng=ctx.rng)
    result = train_reversal(
        model,
        ctx.rng,
        vocab=cfg.attn_vocab,
        steps=cfg.attn_steps,
        batch=cfg.attn_batch,
        lr=cfg.attn_lr,
        progress=ctx.progress,
    )
    _plot_attention(ctx, result.weights, result.ids)
    return {
        "attention_diagonal_mass": attention_diagonal_mass(result.weights),
        "reversal_accuracy": result.accuracy,
        "reversal_final_loss": float(np.mean(result.history.losses[-50:])),
        "cpu_seconds": time.process_time() - cpu0,
    }


def _cnn_first_stage(ctx: RunContext, cfg: VisualizeConfig) -> None:
    """Load cnn_cifar10's model; plot its first-layer filters and first-stage feature maps."""
    runs_dir = Path(ctx.out_dir).parents[2]  # runs/<layer>/<deliverable>/<stamp> -> runs/
    arrays, meta = load_arrays("layer2_primitives", "cnn_cifar10", "model.safetensors", runs_dir)
    model = CifarCNN(meta["widths"], rng=np.random.default_rng(0))
    load_state_arrays(model, arrays)
    model.eval()
    x_test, y_test = load_cifar10("test")
    pick = ctx.rng.choice(len(x_test), size=cfg.num_images, replace=False)
    images = normalize_channels(x_test[pick], meta["normalize_mean"], meta["normalize_std"])
    with no_grad():
        maps = Tensor(images)
        for layer in model.features[:3]:  # conv -> batch norm -> relu of the first stage
            maps = layer(maps)
    _plot_filters(ctx, arrays["features.0.weight"])
    _plot_feature_maps(ctx, x_test[pick], y_test[pick], maps.data, cfg.num_maps, meta["classes"])


def _plot_filters(ctx: RunContext, weight: np.ndarray) -> None:
    plt = pyplot()
    n = weight.shape[0]
    cols = 8
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k < n:
            f = weight[k].transpose(1, 2, 0)  # (3, 3, RGB)
            ax.imshow((f - f.min()) / (f.max() - f.min() + 1e-12), interpolation="nearest")
    fig.suptitle("first-layer filters (each rescaled to [0, 1], RGB)")
    ctx.savefig(fig, "filters.png")


def _plot_feature_maps(
    ctx: RunContext,
    images: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray,
    num_maps: int,
    classes: list[str],
) -> None:
    plt = pyplot()
    n = len(images)
    fig, axes = plt.subplots(n, num_maps + 1, figsize=((num_maps + 1) * 1.2, n * 1.3))
    for i in range(n):
        axes[i, 0].imshow(images[i].transpose(1, 2, 0))
        axes[i, 0].set_title(classes[labels[i]], fontsize=8)
        for j in range(num_maps):
            axes[i, j + 1].imshow(maps[i, j], cmap="viridis")
            if i == 0:
                axes[i, j + 1].set_title(f"ch {j}", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle("first stage (conv -> batch norm -> ReLU) feature maps")
    ctx.savefig(fig, "feature_maps.png")


def _plot_attention(ctx: RunContext, weights: np.ndarray, ids: np.ndarray) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    t = weights.shape[-1]
    ax1.imshow(weights[0, 0], cmap="magma", vmin=0, vmax=1)
    ax1.set_xticks(range(t), ids[0])
    ax1.set_yticks(range(t), ids[0, ::-1])
    ax1.set(xlabel="key (input token)", ylabel="query (output = reversed)", title="one sequence")
    im = ax2.imshow(weights.mean(axis=(0, 1)), cmap="magma", vmin=0, vmax=1)
    ax2.set(xlabel="key position", ylabel="query position", title="mean over 512 sequences")
    fig.colorbar(im)
    ctx.savefig(fig, "attention.png")
