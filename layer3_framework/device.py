"""Where tensors live: one helper that picks the accelerator, so no other code names a device.

Device-agnostic code asks ``resolve_device(requested)`` once and passes the result around. The
rule is a preference order — ``cuda`` (an NVIDIA GPU), then ``mps`` (Apple silicon), then ``cpu`` —
and an explicit request (``--device`` on the command line, carried as ``ctx.device``) overrides it.
Asking for a device this machine lacks is an error, not a silent fall-back: a run that was meant
for a GPU must not quietly spend hours on a CPU.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch

KNOWN_DEVICES = ("cuda", "mps", "cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(requested: str | None = None) -> torch.device:
    """The device to run on: ``requested`` if given (``cuda``, ``cuda:1``, ``mps``, ``cpu``),
    else the best one present (cuda, then mps, then cpu).

    Raises ValueError for an unknown name and RuntimeError for a known device that is absent.
    """
    if requested is None or requested == "" or requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(requested, str):
        raise TypeError(f"device must be a str or None, got {type(requested).__name__}")
    kind, _, index = requested.partition(":")
    if kind not in KNOWN_DEVICES or (index and not index.isdigit()):
        raise ValueError(
            f"unknown device {requested!r}; expected one of {list(KNOWN_DEVICES)} "
            "(optionally with an index, e.g. 'cuda:0'), or None/'auto' for the best available"
        )
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available here")
        if index and int(index) >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {requested!r} requested but only {torch.cuda.device_count()} "
                "CUDA device(s) exist"
            )
    if kind == "mps" and not _mps_available():
        raise RuntimeError(f"device {requested!r} requested but MPS is not available here")
    return torch.device(requested)


def join_process_group(dev: torch.device, timeout_s: float = 600.0) -> torch.device:
    """Under torchrun (``WORLD_SIZE`` set, also to 1) join the process group if not yet joined:
    NCCL and ``cuda:LOCAL_RANK`` on CUDA, else gloo on ``dev``; the device this rank trains on.
    A group of one changes nothing: the trainer averages gradients only when ``world > 1``."""
    if "WORLD_SIZE" not in os.environ:
        return dev
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return dev
