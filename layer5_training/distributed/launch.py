"""Launching a data-parallel job: ``torchrun`` as a subprocess, one result file per rank.

``torchrun --standalone --nproc_per_node=N -m <module> ...`` (``python -m
torch.distributed.run``) starts ``N`` copies of a worker module on this machine with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and a rendezvous address in their environment. Each copy
joins one *process group* (:func:`init_process_group`): gloo on CPU, NCCL with one GPU per
``LOCAL_RANK`` on CUDA. Collectives (all-reduce, broadcast, all-gather) then run between them.

Two things make a distributed job safe to run from a test or a deliverable:

- **Results are files.** Each rank writes ``rank<r>.json`` (and tensors as ``rank<r>.pt``) into
  the job's folder, atomically; a rank that raises writes ``rank<r>.error`` (its traceback)
  first. :func:`launch` reads them back and raises :class:`DistributedError` quoting the
  failing rank's message: not torchrun's wall of elastic-agent logs.
- **Nothing hangs.** The process group has a timeout (``init_process_group(backend,
  timeout=timedelta(seconds=...))``): a rank waiting in a collective for a peer that died
  raises after it instead of waiting forever; torchrun also stops the surviving ranks when one
  exits non-zero; and :func:`launch` kills the whole job after its wall-clock ``timeout_s``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from layer0_math.runrecord import write_json
from layer3_framework.device import join_process_group

__all__ = [
    "DistributedError",
    "Rank",
    "init_process_group",
    "launch",
    "read_tensors",
    "rank_main",
    "write_tensors",
]


class DistributedError(RuntimeError):
    """A distributed job failed (a rank raised, or the job ran past its timeout)."""


@dataclass(frozen=True)
class Rank:
    """Who this process is in the job, and the device it computes on."""

    rank: int
    world: int
    device: torch.device


def init_process_group(timeout_s: float = 60.0) -> Rank:
    """Join torchrun's process group: NCCL and ``cuda:LOCAL_RANK`` when CUDA is present, gloo
    on the CPU otherwise; collectives raise after ``timeout_s`` seconds without a peer."""
    if "WORLD_SIZE" not in os.environ:
        raise DistributedError("not started by torchrun: RANK/WORLD_SIZE are not set")
    best = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = join_process_group(best, timeout_s)  # layer 3's: the pipeline joins the same way
    return Rank(dist.get_rank(), dist.get_world_size(), device)


def write_tensors(out_dir: Path, rank: int, tensors: dict[str, torch.Tensor]) -> Path:
    """Save one rank's tensors as ``rank<r>.pt`` (written to a temporary name, then renamed)."""
    path = Path(out_dir) / f"rank{rank}.pt"
    tmp = path.with_suffix(".pt.partial")
    torch.save({k: v.detach().cpu() for k, v in tensors.items()}, tmp)
    tmp.replace(path)
    return path


def read_tensors(out_dir: Path, rank: int = 0) -> dict[str, torch.Tensor]:
    """The tensors rank ``rank`` saved with :func:`write_tensors`."""
    return torch.load(Path(out_dir) / f"rank{rank}.pt", weights_only=True)


def rank_main(job: Callable[[Rank, dict[str, Any], Path], dict[str, Any]], argv: Sequence[str]):
    """Run ``job(rank, spec, out_dir)`` as one torchrun rank: ``argv`` is ``[spec.json, out_dir]``.

    The spec's ``timeout_s`` is the process group's timeout. The job's dict goes to
    ``rank<r>.json``; an exception goes to ``rank<r>.error`` and is re-raised (exit status 1).
    """
    if len(argv) != 2:
        raise SystemExit(f"usage: <worker> SPEC.json OUT_DIR (got {list(argv)})")
    spec = json.loads(Path(argv[0]).read_text())
    out_dir = Path(argv[1])
    rank = int(os.environ.get("RANK", "0"))
    try:
        me = init_process_group(float(spec.get("timeout_s", 60.0)))
        result = job(me, spec, out_dir)
        write_json(out_dir / f"rank{rank}.json", result)
    except BaseException:
        (out_dir / f"rank{rank}.error").write_text(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _failure(out_dir: Path, nproc: int, stderr: str) -> str:
    """The failing ranks' last traceback lines (the exception), else the tail of stderr."""
    errors = []
    for r in range(nproc):
        path = out_dir / f"rank{r}.error"
        if path.exists():
            last = path.read_text().strip().splitlines()[-1]
            errors.append(f"rank {r}: {last}")
    return "; ".join(errors) if errors else stderr.strip()[-2000:]


def launch(
    module: str,
    spec: dict[str, Any],
    out_dir: Path,
    *,
    nproc: int = 2,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node=nproc -m module
    spec.json out_dir``; return each rank's result dict, in rank order.

    Raises :class:`DistributedError` naming the failing rank and its exception, or the timeout.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("rank*.json"), *out_dir.glob("rank*.error")]:
        stale.unlink()
    spec_path = write_json(out_dir / "spec.json", spec)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", module, str(spec_path), str(out_dir)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own process group: a timeout kills torchrun and the ranks
    )
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DistributedError(
            f"{module} on {nproc} ranks ran past its {timeout_s:.0f} s timeout and was killed"
        ) from None
    if proc.returncode != 0:
        raise DistributedError(
            f"{module} on {nproc} ranks failed (exit {proc.returncode}): "
            f"{_failure(out_dir, nproc, stderr)}"
        )
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(nproc)]
