"""TorchScript export by tracing: ``torch.jit.trace`` runs the module once on example inputs and
records the tensor operations it performed into a graph that runs without Python.

A trace keeps no control flow and freezes every Python number it saw, which is why the wrappers
(:mod:`~layer6_serving.export.wrappers`) take positions as a tensor input and split heads with
``unflatten`` instead of ``view(B, T, …)``: the traced graph then holds for any batch and length.
The parity check runs the saved file on shapes other than the example's, so a frozen shape would
show up there.
"""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layer0_math.files import atomic_write_bytes


def export_torchscript(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path
) -> dict[str, Any]:
    """Trace ``module(*args)`` and save it to ``path`` (atomically); returns seconds, bytes."""
    start = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is in maintenance
        traced = torch.jit.trace(module.eval(), args, check_trace=True)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return {"seconds": time.perf_counter() - start, "bytes": buf.getbuffer().nbytes}
