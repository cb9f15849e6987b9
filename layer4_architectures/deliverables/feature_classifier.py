"""``feature_classifier``: the MNIST CNN whose features the generative yardstick uses.

Trained through layer 3's Hydra pipeline with its ``mnist_features`` experiment (CifarCNN,
Conv3x3-BN-ReLU-MaxPool blocks, AdamW with warm-up + cosine, batch 128, no augmentation), for
``epochs`` epochs, into the sub-run ``classifier/`` of this run: a self-describing checkpoint
that :meth:`layer4_architectures.generative.yardstick.Yardstick.from_runs` loads with no config.
The target is a test accuracy ≥ 0.99, so that its features separate the digits well.
"""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable
from layer3_framework.train import compose, run
from layer4_architectures.generative.yardstick import CLASSIFIER_FOLDER

MNIST_TRAIN = 60_000


@deliverable(
    quick={
        "epochs": 2,
        "widths": [16, 32, 64, 128],
        "lr": 3.0e-3,
        "batch_size": 128,
        "data_source": "real",
        "n_train": None,
        "n_test": None,
    },
    full={"epochs": 5},
    headline=["feature_classifier_accuracy"],
)
def feature_classifier(ctx: RunContext) -> dict[str, Any]:
    """Train the MNIST feature CNN through the pipeline; report its test accuracy."""
    cfg = ctx.config
    n_train = cfg["n_train"] or MNIST_TRAIN
    steps = max(1, cfg["epochs"] * (n_train // cfg["batch_size"]))
    overrides = [
        "experiment=mnist_features",
        f"seed={ctx.seed}",
        f"model.widths=[{','.join(str(w) for w in cfg['widths'])}]",
        f"optim.lr={cfg['lr']}",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['batch_size']}",
        f"trainer.max_steps={steps}",
        "trainer.eval_every=0",
        "logger=jsonl",
    ]
    overrides += [f"data.{k}={cfg[k]}" for k in ("n_train", "n_test") if cfg[k] is not None]
    sub = run(
        compose(overrides), ctx.out_dir / CLASSIFIER_FOLDER, device=ctx.device, parent_id=ctx.run_id
    )
    return {
        "feature_classifier_accuracy": sub["test_accuracy"],
        "test_loss": sub["test_loss"],
        "steps": sub["step"],
        "train_seconds": sub["train_seconds"],
        "recipe": f"CifarCNN widths {cfg['widths']}, AdamW lr {cfg['lr']} warm-up cosine, "
        f"batch {cfg['batch_size']}, {cfg['epochs']} epochs",
        "checkpoint": sub["checkpoint"],
    }
