"""Layer 3's training pipeline, unchanged, under torchrun: the trainer is what trains.

``torchrun --standalone --nproc_per_node=N -m layer3_framework.train <overrides>
hydra.run.dir=<one folder>`` runs the same :func:`layer3_framework.train.run` in every rank.
The pipeline joins the process group, the loader gives rank ``r`` its ``B/N`` share of each
global batch ``B = data.batch_size`` (strided through the epoch's permutation), the trainer
broadcasts rank 0's initial weights and averages the gradients before every optimizer step, and
only rank 0 writes the run record, logs and checkpoints. So a 2-rank run trains the weights the
one-process run trains, and a run stopped at step ``k`` and resumed under torchrun (every rank
loads rank 0's checkpoint: weights, optimizer, schedule, data position, RNG) ends where the
uninterrupted one does.

:func:`pipeline_part` is the worker side of those checks: it runs a list of pipeline runs in
order in one torchrun job and keeps each run's final parameters (rank 0's, and how far the
other replicas are from them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from layer3_framework.train import compose, run
from layer3_framework.trainer import Trainer
from layer5_training.distributed.launch import Rank
from layer5_training.distributed.reference import flat

__all__ = ["final_params", "pipeline_part"]


def final_params(trainer: Trainer) -> torch.Tensor:
    """The trained task's parameters as one float64 vector (P,)."""
    return flat(list(trainer.task.parameters()))


def _replica_gap(params: torch.Tensor) -> float:
    """max |θ_r − θ_0| over ranks r (0 when the replicas are equal)."""
    reference = params.clone()
    dist.broadcast(reference, src=0)
    gap = (params - reference).abs().max().reshape(1)
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return float(gap)


def pipeline_part(me: Rank, problem: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """Run ``opts["runs"]`` (each ``{"overrides": [...], "run_dir": str}``) through
    :func:`layer3_framework.train.run`; tensors ``<i>`` (the final parameters of run i)."""
    out: dict[str, Any] = {}
    info: list[dict[str, Any]] = []
    for i, spec in enumerate(opts["runs"]):
        kept: dict[str, torch.Tensor] = {}

        def keep(trainer: Trainer, kept: dict[str, torch.Tensor] = kept) -> None:
            if trainer.step == trainer.cfg.max_steps:
                kept["params"] = final_params(trainer)

        metrics = run(
            compose(spec["overrides"]),
            Path(spec["run_dir"]),
            device=str(me.device),
            progress=False,
            hooks=[keep],
        )
        out[str(i)] = kept["params"]
        info.append({"metrics": metrics, "replica_max_diff": _replica_gap(kept["params"])})
    return {**out, "info": info}
