"""Distributed data parallel (DDP): a full replica per rank, gradients averaged in backward.

``torch.nn.parallel.DistributedDataParallel`` keeps a whole copy of the model and of the
optimiser on each of the ``W`` ranks. At construction it broadcasts rank 0's parameters (all
replicas start equal); during ``backward`` it averages every gradient over the ranks,

    g ← (1/W) Σ_r g_r        (one all-reduce per ~25 MB bucket of gradients)

starting each bucket's all-reduce as soon as its gradients are ready, so communication overlaps
the rest of the backward pass. Every rank then takes the same optimiser step on the same
averaged gradient, and the replicas stay equal without ever sending parameters. Memory per rank
is that of one process: 2 + 2 + K bytes per parameter in mixed precision (ZeRO's accounting, see
:mod:`zero`). Traffic per step: one all-reduce of the gradients, ``2(W−1)/W · 4Ψ`` bytes per
rank for Ψ float32 gradients on a ring (:mod:`comm`).

:func:`ddp_part` runs a :class:`~layer5_training.distributed.reference.Problem` under DDP on
this rank's shards (each rank ``B/W`` rows of the same global batch) and records the traces
that are compared with the one-process run.
"""

from __future__ import annotations

from typing import Any

from torch.nn.parallel import DistributedDataParallel

from layer5_training.distributed.launch import Rank
from layer5_training.distributed.reference import Problem, check_divides, trajectory

__all__ = ["ddp_part"]


def ddp_part(me: Rank, problem: Problem, opts: dict[str, Any]) -> dict[str, Any]:
    """Train ``problem`` under DDP; ``opts``: ``record`` (traces, default true), ``fail_rank``
    and ``fail_step`` (that rank raises at that step). Returns the traces (tensors)."""
    check_divides(problem.global_batch, me.world)
    model = problem.build_model().to(me.device)
    ids = [me.device.index] if me.device.type == "cuda" else None
    wrapped = DistributedDataParallel(model, device_ids=ids)
    optimizer = problem.make_optimizer(list(wrapped.parameters()))
    fail_rank, fail_step = opts.get("fail_rank"), opts.get("fail_step")
    return trajectory(
        wrapped,
        optimizer,
        problem,
        me.rank,
        me.world,
        record=opts.get("record", True),
        fail_at=lambda t: me.rank == fail_rank and t == fail_step,
        device=me.device,
    )
