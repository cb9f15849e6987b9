"""The grokking recipe, trained by layer 3's Trainer: full-batch AdamW with strong weight decay.

Power et al. 2022 and Nanda et al. 2023: AdamW (lr 1e-3, β = (0.9, 0.98), weight decay λ = 1 on
every parameter), a 10-step linear warm-up, then a constant rate; the whole training set is one
batch. AdamW's decoupled decay (Loshchilov & Hutter 2019) shrinks every weight each step::

    θ ← θ − η (m̂ / (√v̂ + ε) + λ θ)

and it is this pull towards small weights that eventually makes the memorising solution more
expensive than the generalising (Fourier) one: test accuracy jumps long after train accuracy is
perfect. With λ = 0 the model memorises and, within the same steps, stays there.

Layer 3's :class:`~layer3_framework.trainer.Trainer` fits full-batch training as it is: the train
"loader" is a list holding one batch (an epoch is a step), the task is the standard
:class:`~layer3_framework.task.Classification`, and a hook (:class:`CurveRecorder`) evaluates the
whole train and test sets at log-spaced steps, for curves read on a log-step axis.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.optim.lr_scheduler import LinearLR

from layer3_framework.repro import seed_everything
from layer3_framework.trainer import Trainer, TrainerConfig
from layer7_research.grokking.data import Split, split_pairs
from layer7_research.grokking.fourier import frequency_norms
from layer7_research.grokking.model import GrokkingTransformer


@dataclass(frozen=True)
class Recipe:
    """One grokking run: the task, the model's sizes and the optimiser."""

    p: int = 113
    train_fraction: float = 0.3
    d_model: int = 128
    n_head: int = 4
    d_mlp: int = 512
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 10
    steps: int = 40000
    n_evals: int = 80
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.n_evals < 1 or self.warmup_steps < 1:
            raise ValueError(
                f"steps, n_evals and warmup_steps must be >= 1, got steps={self.steps}, "
                f"n_evals={self.n_evals}, warmup_steps={self.warmup_steps}"
            )
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(
                f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}"
            )


@dataclass
class Curves:
    """Train and test loss/accuracy, and the embedding's frequency norms, at the eval steps."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    freq_norms: list[list[float]] = field(default_factory=list)

    def first_step(self, key: str, threshold: float) -> int | None:
        """The first eval step at which ``key`` ≥ ``threshold`` (None if it never was)."""
        return next(
            (s for s, v in zip(self.steps, getattr(self, key), strict=True) if v >= threshold), None
        )

    def at_step(self, key: str, step: int) -> float:
        """``key`` at the last eval step ≤ ``step``."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        if i < 0:
            raise ValueError(f"no evaluation at or before step {step} (first: {self.steps[0]})")
        return getattr(self, key)[i]

    def to_dict(self) -> dict[str, list]:
        return asdict(self)


def eval_steps(total: int, n: int) -> list[int]:
    """About n steps spaced evenly on a log axis from 1 to ``total`` (both included)."""
    grid = np.unique(np.round(np.geomspace(1, total, num=n)).astype(int))
    return sorted({int(s) for s in grid} | {total})


class CurveRecorder:
    """A trainer hook: at each of ``steps`` evaluate the full train and test sets and the
    embedding's frequency norms. Evaluation time is not counted as training time."""

    def __init__(self, split: Split, steps: list[int]) -> None:
        self.loaders = {
            "train": [(split.train_x, split.train_y)],
            "test": [(split.test_x, split.test_y)],
        }
        self.due = set(steps)
        self.curves = Curves()

    def __call__(self, trainer: Trainer) -> None:
        if trainer.step not in self.due:
            return
        c = self.curves
        c.steps.append(trainer.step)
        for name, loader in self.loaders.items():
            metrics = trainer.evaluate(loader)
            getattr(c, f"{name}_loss").append(metrics["loss"])
            getattr(c, f"{name}_accuracy").append(metrics["accuracy"])
        emb = trainer.model.token_embedding.detach().cpu().numpy()
        c.freq_norms.append(frequency_norms(emb).tolist())


@dataclass
class GrokResult:
    """A finished run: the model, its curves, the embedding at init, seconds."""

    model: GrokkingTransformer
    curves: Curves
    init_embedding: np.ndarray
    seconds: float


def train_grokking(
    recipe: Recipe,
    split: Split | None = None,
    *,
    device: str = "cpu",
    progress: bool = True,
) -> GrokResult:
    """Train one run of ``recipe`` (its own seeded split unless ``split`` is given)."""
    split = split or split_pairs(recipe.p, recipe.train_fraction, recipe.seed)
    seed_everything(recipe.seed)
    model = GrokkingTransformer(recipe.p, recipe.d_model, recipe.n_head, recipe.d_mlp)
    init_embedding = model.token_embedding.detach().numpy().copy()
    # decay on every parameter, as in both papers (not layer 4's matrices-only groups)
    opt = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay
    )
    warmup = LinearLR(opt, start_factor=1.0 / recipe.warmup_steps, total_iters=recipe.warmup_steps)
    recorder = CurveRecorder(split, eval_steps(recipe.steps, recipe.n_evals))
    cfg = TrainerConfig(
        max_steps=recipe.steps, log_every=max(1, recipe.steps // 20), progress=progress
    )
    trainer = Trainer(
        model, opt, [(split.train_x, split.train_y)], cfg,
        device=device, scheduler=warmup, hooks=[recorder],
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit()
    return GrokResult(model.cpu(), recorder.curves, init_embedding, time.perf_counter() - start)
