"""The cost of data parallelism: all-reduce bandwidth, and a model of the speed-up at N ranks.

**Ring all-reduce.** ``N`` ranks in a ring each hold a vector of ``M`` bytes cut into ``N``
chunks. A *reduce-scatter* passes chunks around the ring for ``N − 1`` steps, adding as it goes,
until rank ``r`` holds the sum of chunk ``r``; an *all-gather* passes the summed chunks around
for another ``N − 1`` steps. Each step sends ``M/N`` bytes per rank, so

    t_allreduce(N, M) = 2(N−1)·α + 2(N−1)/N · M / β

with ``α`` the per-message latency and ``β`` the link bandwidth: the bandwidth term barely grows
with ``N`` (it tends to ``2M/β``), which is why data parallelism scales. nccl-tests reports the
*bus bandwidth* ``busbw = 2(N−1)/N · M / t``, the rate the links actually carried, comparable
across ``N`` (the *algorithm bandwidth* ``M / t`` is what a user sees).

**Speed-up model** (strong scaling: the global batch ``B`` fixed, split over ``N`` ranks). One
process computes a step in ``t_c``; ``N`` ranks each compute ``t_c/N`` and then all-reduce the
``M`` gradient bytes:

    no overlap:    t_N = t_c/N + t_comm(N)
    overlap:       t_N = t_c/N + max(0, t_comm(N) − f·t_c/N)

where the all-reduce can hide behind the backward pass only (DDP's buckets start as gradients
become ready), a fraction ``f ≈ 2/3`` of the compute. Speed-up ``S(N) = t_c / t_N``; it peaks
where ``t_c/N`` falls to the size of ``t_comm``. (Weak scaling, ``B/N`` fixed per rank, gives
``S(N) = N·t_c / (t_c + t_comm)`` without overlap.)

:func:`allreduce_part` measures ``t_allreduce`` over message sizes under torchrun (the slowest
rank's mean over repetitions); :func:`fit_alpha_beta` fits ``α`` and ``β`` to it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from layer5_training.distributed.launch import Rank

BACKWARD_FRACTION = 2.0 / 3.0  # backward ≈ 2 forward passes: the part of a step comm can hide in

__all__ = [
    "BACKWARD_FRACTION",
    "allreduce_part",
    "bus_bandwidth",
    "fit_alpha_beta",
    "predicted_speedup",
    "ring_allreduce_seconds",
]


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"the number of ranks must be >= 1, got {n}")


def ring_allreduce_seconds(nbytes: float, n: int, bandwidth: float, latency: float = 0.0) -> float:
    """``2(n−1)·latency + 2(n−1)/n · nbytes / bandwidth`` (bandwidth in bytes/s); 0 for n = 1."""
    _check_n(n)
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0 bytes/s, got {bandwidth}")
    return 2 * (n - 1) * latency + 2 * (n - 1) / n * nbytes / bandwidth


def bus_bandwidth(nbytes: float, seconds: float, n: int) -> float:
    """nccl-tests' all-reduce bus bandwidth ``2(n−1)/n · nbytes / seconds`` (bytes/s)."""
    _check_n(n)
    return 2 * (n - 1) / n * nbytes / seconds


def fit_alpha_beta(nbytes: np.ndarray, seconds: np.ndarray, n: int) -> tuple[float, float]:
    """Least-squares ``(α, β)`` of ``t = 2(n−1)·α + 2(n−1)/n · M/β`` to measured all-reduces."""
    if n < 2:
        raise ValueError("fitting a ring all-reduce needs n >= 2 ranks")
    design = np.stack([np.full(len(nbytes), 2.0 * (n - 1)), 2.0 * (n - 1) / n * nbytes], axis=1)
    (alpha, inv_beta), *_ = np.linalg.lstsq(design, np.asarray(seconds), rcond=None)
    if inv_beta <= 0:
        raise ValueError("the all-reduce times do not grow with the message size: no bandwidth")
    return max(float(alpha), 0.0), float(1.0 / inv_beta)


def predicted_speedup(
    n: int,
    compute_s: float,
    nbytes: float,
    bandwidth: float,
    *,
    latency: float = 0.0,
    overlap: bool = False,
) -> float:
    """``S(n) = t_c / t_n`` at a fixed global batch (see the module docstring)."""
    _check_n(n)
    if compute_s <= 0:
        raise ValueError(f"compute time must be > 0 s, got {compute_s}")
    local = compute_s / n
    comm = ring_allreduce_seconds(nbytes, n, bandwidth, latency)
    exposed = max(0.0, comm - BACKWARD_FRACTION * local) if overlap else comm
    return compute_s / (local + exposed)


def allreduce_part(me: Rank, problem: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """Time ``all_reduce`` of float32 tensors of ``opts["sizes"]`` bytes, ``opts["reps"]``
    times each after two warm-ups; ``info``: sizes, seconds (the slowest rank's mean), busbw."""
    reps = int(opts.get("reps", 10))
    sizes, seconds = [int(s) for s in opts["sizes"]], []
    for nbytes in sizes:
        buf = torch.ones(max(nbytes // 4, 1), device=me.device)
        for _ in range(2):
            dist.all_reduce(buf)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(buf)
        if me.device.type == "cuda":
            torch.cuda.synchronize()
        took = torch.tensor([(time.perf_counter() - start) / reps], dtype=torch.float64)
        dist.all_reduce(took, op=dist.ReduceOp.MAX)
        seconds.append(float(took))
    busbw = [bus_bandwidth(m, t, me.world) for m, t in zip(sizes, seconds, strict=True)]
    return {"info": {"sizes": sizes, "seconds": seconds, "busbw": busbw}}
