"""ONNX export with ``torch.onnx.export(dynamo=True)``: ``torch.export`` traces the module into
an FX graph with symbolic shapes, which is translated op by op into ONNX and optimised.

Dynamic axes are declared as ``torch.export.Dim`` ranges (batch 1 … 4096, sequence 1 … block
size, past length 1 … block size − 1); the exporter proves the graph valid over the whole range
or refuses, so an exported model cannot silently be specialised to the example's shape. The file
is then checked by ``onnx.checker.check_model(full_check=True)`` (the structure, the opset, and
shape inference over the graph).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from layer0_math.files import atomic_write_bytes


@contextlib.contextmanager
def quiet_logger(logger: str):
    """Silence a logger's warnings for the block (``""``: the root logger). The exporter logs one
    line per torchvision operator it skips ("torchvision is not installed"), never used here."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def export_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: dict[str, Any],
) -> dict[str, Any]:
    """Export ``module(*args)`` to ``path`` (atomically) and check it; returns seconds, bytes."""
    start = time.perf_counter()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        quiet_logger("torch.onnx"),
    ):
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter, not our problem
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    proto = program.model_proto
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    atomic_write_bytes(Path(path), data)
    return {
        "seconds": time.perf_counter() - start,
        "bytes": len(data),
        "opset": int(proto.opset_import[0].version),
    }
