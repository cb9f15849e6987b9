"""Dynamic int8 quantisation with ONNX Runtime: weights stored as int8, activations quantised on
the fly.

For a weight matrix W the quantiser stores q = round(W / s) + z in int8 with one scale s (and
zero point z) per tensor; at run time each activation tensor gets its own scale from its
observed range, the matmul runs in integers (``MatMulInteger``/``DynamicQuantizeLinear``) and
the result is rescaled. Weights shrink about 4x; the error is the rounding of both operands,
so logits change slightly and accuracy (or perplexity) must be measured on held-out data, not
assumed. No calibration data is needed, unlike static quantisation.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path
from typing import Any

from layer0_math.files import atomic_write_bytes
from layer6_serving.export.onnx_export import quiet_logger


def quantize_int8(src: Path, dst: Path) -> dict[str, Any]:
    """Write the dynamic-int8 version of the ONNX model ``src`` to ``dst``; sizes and ratio."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        staged = Path(tmp) / dst.name
        # ORT logs "consider pre-processing before quantization" to the root logger: advice for
        # static quantisation of conv nets, not for this dynamic one
        with (
            contextlib.redirect_stdout(io.StringIO()),
            quiet_logger(""),
            quiet_logger("onnxruntime"),
        ):
            quantize_dynamic(str(src), str(staged), weight_type=QuantType.QInt8)
        atomic_write_bytes(dst, staged.read_bytes())
    before, after = src.stat().st_size, dst.stat().st_size
    return {
        "seconds": time.perf_counter() - start,
        "bytes_fp32": before,
        "bytes": after,
        "size_ratio": after / before,
    }
