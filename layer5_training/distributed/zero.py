"""ZeRO stage 1, written here: the optimiser state partitioned across the data-parallel ranks.

Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models".
Data parallelism replicates everything a rank holds; for Ψ parameters trained with mixed-precision
Adam that is, per rank, 2Ψ bytes of fp16 parameters, 2Ψ of fp16 gradients and KΨ of optimiser
state (fp32 master parameters, momentum and variance: K = 12), ``(2 + 2 + K)·Ψ`` in all. The
optimiser state is the largest part and each rank only needs it for the parameters it updates.
Partitioning the three parts over ``N`` ranks gives the paper's stages (bytes per rank):

    replicated (DDP)      (2 + 2 + K)·Ψ
    ZeRO-1 (P_os)         (2 + 2)·Ψ + K·Ψ/N
    ZeRO-2 (P_os+g)       2·Ψ + (2 + K)·Ψ/N
    ZeRO-3 (P_os+g+p)     (2 + 2 + K)·Ψ/N          (FSDP)

Our runs are plain fp32 Adam(W): no master copy, so K_fp32 = 8 bytes per parameter
(``exp_avg`` and ``exp_avg_sq``), and ZeRO-1 predicts ``8·Ψ/N`` bytes of state per rank.

**The partition** here is *flat*: the parameters, flattened in ``model.parameters()`` order,
form one vector of Ψ numbers padded to ``N·S`` with ``S = ⌈Ψ/N⌉``; rank ``r`` owns elements
``[r·S, min((r+1)·S, Ψ))`` (the last rank's shard is shorter when N does not divide Ψ, so its
state is smaller: the per-rank bytes are not exactly 8Ψ/N then). Each rank's optimiser is an
ordinary ``torch.optim`` optimiser over one tensor, its shard of the parameters. A step is

    1. reduce-scatter the flat gradient:  rank r gets ḡ[r·S:(r+1)·S] = (1/N) Σ_q g_q[...]
    2. step the shard:                    θ_r ← Adam(θ_r, ḡ_r)   (state only for θ_r)
    3. all-gather the shards:             θ = [θ_0, …, θ_{N−1}] on every rank

An all-reduce is a reduce-scatter followed by an all-gather (that is how a ring all-reduce
runs), so steps 1 and 3 send exactly what DDP's gradient all-reduce sends: ZeRO-1 cuts the
optimiser memory by N at no extra communication. Adam is elementwise, so the sharded update is
the replicated update: the parameters after every step equal DDP's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist

from layer5_training.distributed.launch import Rank
from layer5_training.distributed.reference import Problem, check_divides, trajectory

STAGES = ("ddp", "zero1", "zero2", "zero3")

__all__ = ["STAGES", "Zero1", "bytes_per_rank", "zero1_part"]


def bytes_per_rank(psi: float, n: int, stage: str, k: float = 12.0) -> float:
    """Model-state bytes per rank of ZeRO's ``stage`` for Ψ parameters on ``n`` ranks
    (fp16 parameters and gradients, ``k`` bytes of optimiser state per parameter)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    params, grads, state = 2.0 * psi, 2.0 * psi, k * psi
    shards = {"ddp": (1, 1, 1), "zero1": (1, 1, n), "zero2": (1, n, n), "zero3": (n, n, n)}
    p, g, s = shards[stage]
    return params / p + grads / g + state / s


class Zero1:
    """ZeRO-1 over ``params``: this rank keeps ``make_optimizer``'s state for its flat shard.

    Use it as an optimiser (``zero_grad()``, ``step()``) after a *plain* backward on this
    rank's shard of the batch (no DDP: the step averages the gradients itself).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
        rank: int,
        world: int,
    ) -> None:
        self.params = list(params)
        self.rank, self.world = rank, world
        self.numel = sum(p.numel() for p in self.params)  # Ψ
        self.size = math.ceil(self.numel / world)  # S, the padded shard length
        self.lo = min(rank * self.size, self.numel)
        self.hi = min(self.lo + self.size, self.numel)
        with torch.no_grad():
            for p in self.params:  # the replicas start from rank 0's weights, as DDP's do
                dist.broadcast(p.data, src=0)
        mine = self._flat([p.detach() for p in self.params])[self.lo : self.hi]
        self.shard = torch.nn.Parameter(mine.clone())  # θ_r (S_r,)
        self.optimizer = make_optimizer([self.shard])

    def _flat(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The tensors as one vector, zero-padded to N·S: (N·S,)."""
        out = torch.zeros(self.size * self.world, dtype=tensors[0].dtype, device=tensors[0].device)
        out[: self.numel] = torch.cat([t.reshape(-1) for t in tensors])
        return out

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None if set_to_none else torch.zeros_like(p)

    @torch.no_grad()
    def step(self) -> None:
        """Reduce-scatter the gradients, step this rank's shard, all-gather the parameters."""
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        local = torch.empty(self.size, dtype=grads[0].dtype, device=grads[0].device)
        dist.reduce_scatter_tensor(local, self._flat(grads))  # Σ_q g_q on my shard: (S,)
        self.shard.grad = local[: self.hi - self.lo] / self.world
        self.optimizer.step()
        mine = torch.zeros_like(local)
        mine[: self.hi - self.lo] = self.shard.detach()
        gathered = torch.empty(self.size * self.world, dtype=mine.dtype, device=mine.device)
        dist.all_gather_into_tensor(gathered, mine)  # (N·S,)
        for p, part in zip(
            self.params, gathered[: self.numel].split([p.numel() for p in self.params]), strict=True
        ):
            p.copy_(part.view_as(p))

    def state_bytes(self) -> int:
        """Bytes of this rank's optimiser state: Σ nbytes of every state tensor (``exp_avg``,
        ``exp_avg_sq`` and Adam's scalar ``step`` count)."""
        return sum(
            t.nbytes
            for state in self.optimizer.state.values()
            for t in state.values()
            if isinstance(t, torch.Tensor)
        )


def zero1_part(me: Rank, problem: Problem, opts: dict[str, Any]) -> dict[str, Any]:
    """Train ``problem`` with :class:`Zero1` over ``problem.make_optimizer``; the traces plus
    ``info``: this rank's ``state_bytes``, Ψ (``numel``) and the world size."""
    check_divides(problem.global_batch, me.world)
    model = problem.build_model().to(me.device)
    optimizer = Zero1(model.parameters(), problem.make_optimizer, me.rank, me.world)
    trace = trajectory(
        model,
        optimizer,
        problem,
        me.rank,
        me.world,
        record=opts.get("record", True),
        device=me.device,
    )
    trace.pop("grads", None)  # the rank-local gradients before averaging: not DDP's
    info = {"state_bytes": optimizer.state_bytes(), "numel": optimizer.numel, "world": me.world}
    return {**trace, "info": info}
