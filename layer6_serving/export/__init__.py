"""Packaging with parity: layer 4's models as ONNX and TorchScript graphs proven equal to eager.

- :mod:`~.wrappers`: export-friendly faces of the models (tensors in, tensors out; the GPT as a
  prefill graph and a KV-cache step graph; normalisation baked into the classifier);
- :mod:`~.onnx_export` (``torch.onnx.export(dynamo=True)``, dynamic axes, the ONNX checker),
  :mod:`~.torchscript_export` (``torch.jit.trace``), :mod:`~.quantize` (ONNX Runtime dynamic
  int8);
- :mod:`~.parity`: max abs diff against eager PyTorch on random and real inputs, cached vs
  full-forward logits, greedy tokens;
- :mod:`~.bundle`: :func:`export_bundle`, the one way a checkpoint becomes a registry version;
- :mod:`~.cli`: ``python -m layer6_serving export``.

``export_bundle`` and ``FORMATS`` are imported on first use: the runtime imports the wrappers
from this package, and the bundle imports the runtime.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FORMATS", "export_bundle"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from layer6_serving.export import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
