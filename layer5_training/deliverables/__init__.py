"""Layer 5's deliverables, in run order: ``python -m layer5_training [--preset quick|full]``.

``optimizer_benchmark`` (every optimiser, a learning-rate sweep, three seeds, one model),
``clipping_stability`` (past the stable learning rate, with and without clipping),
``regularization_ablation`` (dropout, weight decay, augmentation, label smoothing, normalisation),
``distributed`` (DDP, FSDP2 and ZeRO-1 under ``torchrun`` against one process),
``sweep`` (an Optuna study over the Hydra pipeline, pruned, shared through SQLite).
"""

from layer5_training.deliverables.clipping_stability import clipping_stability
from layer5_training.deliverables.distributed import distributed
from layer5_training.deliverables.optimizer_benchmark import optimizer_benchmark
from layer5_training.deliverables.regularization_ablation import regularization_ablation
from layer5_training.deliverables.sweep import sweep

__all__ = [
    "optimizer_benchmark",
    "clipping_stability",
    "regularization_ablation",
    "distributed",
    "sweep",
]
