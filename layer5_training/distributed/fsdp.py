"""Fully sharded data parallel, FSDP2 (``torch.distributed.fsdp.fully_shard``): ZeRO-3.

FSDP keeps on each of the ``W`` ranks only a ``1/W`` shard of every parameter, of its gradient
and of its optimiser state (each parameter becomes a ``DTensor`` sharded on dim 0). Around each
wrapped module's forward and backward it *all-gathers* the module's full parameters, uses them,
and frees them; after the module's backward it *reduce-scatters* the gradients, so each rank
keeps the averaged gradient of its own shard only:

    forward:   all-gather θ_m  →  compute  →  free
    backward:  all-gather θ_m  →  compute ∇θ_m  →  reduce-scatter ∇θ_m  →  free

Per step that is two all-gathers and one reduce-scatter of the parameters, ``3(W−1)/W · 4Ψ``
bytes on a ring against DDP's ``2(W−1)/W · 4Ψ`` (an all-reduce *is* a reduce-scatter followed
by an all-gather), for memory ``(2 + 2 + K)·Ψ/W`` per rank instead of ``(2 + 2 + K)·Ψ``.
The optimiser runs on the local shards, so every parameter's update is the one-process update.

:func:`fsdp_part` shards each ``Linear`` and then the root (the usual one unit per block), runs
the same problem, and records the *gathered* gradients and parameters (``full_tensor()``).
With the pinned torch 2.13 this runs on the CPU with gloo (gloo implements reduce-scatter).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.distributed.fsdp import fully_shard

from layer5_training.distributed.launch import Rank
from layer5_training.distributed.reference import Problem, check_divides, trajectory

__all__ = ["fsdp_part"]


def fsdp_part(me: Rank, problem: Problem, opts: dict[str, Any]) -> dict[str, Any]:
    """Train ``problem`` with every ``Linear`` and the root under ``fully_shard``."""
    check_divides(problem.global_batch, me.world)
    model = problem.build_model().to(me.device)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            fully_shard(module)
    fully_shard(model)
    optimizer = problem.make_optimizer(list(model.parameters()))  # over the local shards
    return trajectory(
        model,
        optimizer,
        problem,
        me.rank,
        me.world,
        record=opts.get("record", True),
        device=me.device,
    )
