"""The problem every data-parallel run solves, and the one-process trajectory they must equal.

A :class:`Problem` is a classifier (layer 3's :class:`~layer3_framework.models.MLPClassifier`,
built from a seed, so every process builds the same initial weights), a fixed stream of samples
and an optimiser. Step ``t`` uses the *global batch* ``B_t`` of rows ``[t·B, (t+1)·B)`` (wrapping
around the data). The one-process run computes

    g_t = ∇_θ (1/B) Σ_{i ∈ B_t} ℓ(f_θ(x_i), y_i)

With ``W`` ranks each rank ``r`` takes the contiguous shard ``B_t^r`` of ``B/W`` rows, computes
the mean loss of its shard, and the ranks average their gradients:

    (1/W) Σ_r ∇ (W/B) Σ_{i ∈ B_t^r} ℓ_i  =  ∇ (1/B) Σ_{i ∈ B_t} ℓ_i  =  g_t

so a data-parallel step *is* the one-process step, up to the order of float additions. That is
why ``B`` must be a multiple of ``W`` (unequal shards would weight samples unequally).
:func:`trajectory` runs the steps for any (wrapped) model and optimiser and records the loss, the
flattened gradient and the parameters after every step: the traces the tests and the
``distributed`` deliverable compare.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from layer3_framework.models import MLPClassifier

OPTIMIZERS = ("sgd", "adamw")

__all__ = ["OPTIMIZERS", "Problem", "check_divides", "compute_part", "flat", "trajectory"]


def check_divides(global_batch: int, world: int) -> None:
    """A global batch that ``world`` ranks cannot split into equal shards is an error."""
    if world < 1 or global_batch % world:
        raise ValueError(
            f"the global batch of {global_batch} samples is not divisible by the world size "
            f"{world}: each rank must take global_batch / world samples"
        )


@dataclass
class Problem:
    """Samples ``x`` (N, D) and labels ``y`` (N,), an MLP of ``hidden`` widths, an optimiser."""

    x: torch.Tensor  # (N, D) float32
    y: torch.Tensor  # (N,) int64
    num_classes: int
    hidden: list[int] = field(default_factory=lambda: [64])
    steps: int = 5
    global_batch: int = 16
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.x.ndim != 2 or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"expected x (N, D) and y (N,), got {self.x.shape}, {self.y.shape}")
        if self.global_batch > self.x.shape[0]:
            raise ValueError(f"global batch {self.global_batch} > {self.x.shape[0]} samples")

    def build_model(self) -> nn.Module:
        """The initial model: the same weights in every process (seeded)."""
        torch.manual_seed(self.seed)
        return MLPClassifier(self.x.shape[1], self.num_classes, self.hidden)

    def make_optimizer(self, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9)
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def shard(self, step: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank ``rank``'s rows of step ``step``'s global batch: (B/W, D) and (B/W,)."""
        check_divides(self.global_batch, world)
        local = self.global_batch // world
        start = (step * self.global_batch + rank * local) % self.x.shape[0]
        rows = (torch.arange(local) + start) % self.x.shape[0]
        return self.x[rows], self.y[rows]

    def save(self, path: Path) -> Path:
        meta = {k: v for k, v in asdict(self).items() if k not in ("x", "y")}
        torch.save({"x": self.x, "y": self.y, "meta": meta}, path)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> Problem:
        blob = torch.load(path, weights_only=True)
        return cls(x=blob["x"], y=blob["y"], **blob["meta"])


def flat(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """One float64 vector of the tensors in order (a sharded DTensor is gathered whole first:
    a collective, so every rank calls it)."""
    parts = []
    for t in tensors:
        if t is None:
            raise ValueError("a parameter has no gradient")
        full = t.full_tensor() if hasattr(t, "full_tensor") else t
        parts.append(full.detach().reshape(-1).to("cpu", torch.float64))
    return torch.cat(parts)


def _global_mean(value: torch.Tensor, world: int) -> float:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def trajectory(
    model: nn.Module,
    optimizer: Any,
    problem: Problem,
    rank: int = 0,
    world: int = 1,
    *,
    record: bool = True,
    fail_at: Callable[[int], bool] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Train ``problem.steps`` steps on this rank's shards; the traces (on rank-local CPU).

    ``loss`` (T,) is the global batch's mean loss (averaged over ranks); ``grads`` (T, P) the
    gradient each step stepped with, as the model's parameters hold it after ``backward``;
    ``params`` (T, P) the parameters after each step; ``seconds`` (T,) each step's wall time.
    ``record=False`` keeps only losses and times (for timing). ``fail_at(step)`` true raises a
    RuntimeError there (how the tests kill a rank mid-run).
    """
    params = list(model.parameters())
    losses, grads, after, seconds = [], [], [], []
    for t in range(problem.steps):
        if fail_at is not None and fail_at(t):
            raise RuntimeError(f"rank {rank} failed on purpose at step {t}")
        x, y = (v.to(device) for v in problem.shard(t, rank, world))
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)  # this shard's mean loss
        loss.backward()  # DDP / FSDP average the gradients over the ranks here
        if record:
            grads.append(flat([p.grad for p in params]))
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        if record:
            after.append(flat(params))
        losses.append(_global_mean(loss.detach(), world))
    trace = {"loss": torch.tensor(losses, dtype=torch.float64), "seconds": torch.tensor(seconds)}
    if record:
        trace.update(grads=torch.stack(grads), params=torch.stack(after))
    return trace


def compute_part(me: Any, problem: Problem, opts: dict[str, Any]) -> dict[str, Any]:
    """Each rank trains a plain (unwrapped) replica on its shards with no gradient exchange:
    the step time of the compute alone while the other ranks compute too (what sharing the
    machine's cores and memory costs, apart from communication). Returns the traces (times)."""
    check_divides(problem.global_batch, me.world)
    model = problem.build_model().to(me.device)
    optimizer = problem.make_optimizer(list(model.parameters()))
    return trajectory(model, optimizer, problem, me.rank, me.world, record=False, device=me.device)
