"""The torchrun worker: ``python -m layer5_training.distributed.worker SPEC.json OUT_DIR``.

Started by :func:`~layer5_training.distributed.launch.launch` on every rank. The spec names a
:class:`~layer5_training.distributed.reference.Problem` file (``problem``), the process group's
timeout (``timeout_s``) and the *parts* to run in order in one process group, each
``{"name": ..., "key": ..., **options}`` with ``name`` one of :data:`PARTS` (a part may name
its own ``problem``). A part returns tensors and an ``info`` dict: every rank's ``info`` goes
into its ``rank<r>.json`` under ``parts[key]``; rank 0's tensors go to ``rank0.pt`` as
``<key>/<tensor>`` (the replicas are equal, so one copy is kept).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from layer5_training.distributed.launch import Rank, rank_main, write_tensors
from layer5_training.distributed.reference import Problem

# imported when a part runs: a rank pays for FSDP or Hydra only when it uses them
PARTS = {
    "ddp": "layer5_training.distributed.ddp:ddp_part",
    "fsdp": "layer5_training.distributed.fsdp:fsdp_part",
    "zero1": "layer5_training.distributed.zero:zero1_part",
    "compute": "layer5_training.distributed.reference:compute_part",
    "allreduce": "layer5_training.distributed.comm:allreduce_part",
    "pipeline": "layer5_training.distributed.pipeline:pipeline_part",
}
NEEDS_PROBLEM = ("ddp", "fsdp", "zero1", "compute")

__all__ = ["PARTS", "run_parts"]


def _part(name: str) -> Callable[..., dict[str, Any]]:
    module, function = PARTS[name].split(":")
    return getattr(importlib.import_module(module), function)


def run_parts(me: Rank, spec: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run the spec's parts on this rank; this rank's result (its ``info`` per part)."""
    tensors, infos = {}, {}
    for part in spec["parts"]:
        name, key = part["name"], part.get("key", part["name"])
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; expected one of {sorted(PARTS)}")
        path = part.get("problem", spec.get("problem"))
        if name in NEEDS_PROBLEM and path is None:
            raise ValueError(f"part {key!r} ({name}) needs a problem file")
        problem = Problem.load(Path(path)) if name in NEEDS_PROBLEM else None
        result = _part(name)(me, problem, part)
        infos[key] = result.pop("info", None)
        tensors.update({f"{key}/{k}": v for k, v in result.items()})
    if me.rank == 0:
        write_tensors(out_dir, 0, tensors)
    return {"rank": me.rank, "world": me.world, "parts": infos}


if __name__ == "__main__":
    rank_main(run_parts, sys.argv[1:])
