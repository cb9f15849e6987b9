"""Post-training quantisation (PTQ): a trained fp32 network turned into int8 without training.

Nagel et al. 2021, "A White Paper on Neural Network Quantization" (https://arxiv.org/abs/2106.08295).
Every method stores weights as q = clamp(round(w / s) + z, q_min, q_max) (see
:mod:`~layer7_research.efficient.quantizer`); they differ in what happens to the activations:

- **weight-only** (:func:`weight_only_int8`, from the scratch quantiser): int8 weights, one
  symmetric scale per output channel, dequantised ŵ = s_c · q before an fp32 matmul. The model
  shrinks ~4x; the arithmetic is still fp32, so it is not faster (memory-bound large LMs are).
- **dynamic** (:func:`dynamic_int8`, ``torch.ao.quantization.quantize_dynamic``): int8 weights;
  each activation gets its scale from its own range at run time, the matmul runs in int8 with
  int32 accumulation, y = s_x s_w Σ (q_x − z_x) q_w. No calibration; suits linears/LSTMs.
- **static** (:func:`static_int8`, FX graph mode ``prepare_fx`` / ``convert_fx``): the activation
  ranges are fixed beforehand by running *calibration* batches through observers; conv-BN(-ReLU)
  are fused first (BN folded into the conv: w' = γ w / σ, b' = β − γ μ / σ), residual adds
  become quantised adds, and the whole network runs on int8 kernels (x86/fbgemm engine).

:func:`sensitivity` quantises one layer at a time (fake-quant of its weights per channel and its
input per tensor, scratch quantiser) to find the layers whose int8 error costs the most accuracy.
Size is the bytes of the serialised ``state_dict`` (:func:`model_bytes`); latency the median wall
time of a forward pass (:func:`latency_ms`); quality the mean loss and accuracy over a held-out
loader (:func:`mean_metrics`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework import ImageData
from layer7_research.efficient.quantizer import FakeQuant, Observer, QScheme, quantize

ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")
WEIGHT_SCHEME = QScheme("int8", symmetric=True, axis=0)  # per output channel
ACT_SCHEME = QScheme("uint8", symmetric=False)  # per tensor, affine


@contextlib.contextmanager
def quant_engine(engine: str) -> Iterator[None]:
    """Run the block with ``torch.backends.quantized.engine = engine`` (restored after)."""
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(
            f"quantised engine {engine!r} is not supported here; expected one of "
            f"{torch.backends.quantized.supported_engines}"
        )
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def model_bytes(model: nn.Module) -> int:
    """Bytes of the serialised ``state_dict`` (shared storage, e.g. tied weights, counted once)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


@torch.inference_mode()
def latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``model(x)`` over ``repeats`` calls after ``warmup`` calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats}, warmup={warmup}: expected repeats >= 1, warmup >= 0")
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


# ----------------------------------------------------------------------------- linears


class Int8WeightLinear(nn.Module):
    """y = x ŵᵀ + b with ŵ = s_c · q: int8 weights, one symmetric scale per output row."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach()  # (out, in)
        obs = Observer(WEIGHT_SCHEME)
        obs(w)
        scale, zero_point = obs.qparams()  # (out,), zeros
        self.register_buffer(
            "qweight", quantize(w, scale, zero_point, WEIGHT_SCHEME).to(torch.int8)
        )
        self.register_buffer("scale", scale)  # (out,) float32
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def weight(self) -> torch.Tensor:
        return self.qweight.to(torch.float32) * self.scale[:, None]  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight().to(x.dtype), self.bias)  # (..., out)


def _linears(model: nn.Module, under: str) -> list[str]:
    """Names of the ``nn.Linear`` modules inside submodule ``under`` ("" : the whole model)."""
    root = model.get_submodule(under) if under else model
    prefix = f"{under}." if under else ""
    return [prefix + n for n, m in root.named_modules() if isinstance(m, nn.Linear)]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def weight_only_int8(model: nn.Module, under: str = "") -> nn.Module:
    """A copy of ``model``, each ``nn.Linear`` inside ``under`` now an :class:`Int8WeightLinear`."""
    out = copy.deepcopy(model).eval()
    names = _linears(out, under)
    if not names:
        raise ValueError(f"no nn.Linear inside {under or 'the model'!r} to quantise")
    for name in names:
        _replace(out, name, Int8WeightLinear(out.get_submodule(name)))
    return out


def dynamic_int8(model: nn.Module, under: str = "", engine: str = "x86") -> nn.Module:
    """A copy with the ``nn.Linear`` modules inside ``under`` dynamically quantised (int8)."""
    from torch.ao.quantization import quantize_dynamic

    out = copy.deepcopy(model).eval()
    names = set(_linears(out, under))
    if not names:
        raise ValueError(f"no nn.Linear inside {under or 'the model'!r} to quantise")
    with quant_engine(engine):
        return quantize_dynamic(out, names, dtype=torch.qint8)


# ----------------------------------------------------------------------------- static (FX)


def static_int8(
    model: nn.Module, calibration: Iterable[torch.Tensor], engine: str = "x86"
) -> nn.Module:
    """Static int8 by FX graph mode: trace, fuse conv-BN-ReLU, observe ``calibration`` batches
    (activation ranges), convert to int8 kernels. The model must be symbolically traceable."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise ValueError("static quantisation needs at least one calibration batch")
    with quant_engine(engine), torch.no_grad():
        prepared = prepare_fx(
            copy.deepcopy(model).eval(), get_default_qconfig_mapping(engine), (first,)
        )
        prepared(first)  # observers record each activation's range
        for x in batches:
            prepared(x)
        return convert_fx(prepared)


def run_engine(model: nn.Module, engine: str = "x86") -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` as a function that runs under quantised engine ``engine``."""

    def call(x: torch.Tensor) -> torch.Tensor:
        with quant_engine(engine):
            return model(x)

    return call


# ----------------------------------------------------------------------------- sensitivity


class FakeQuantLayer(nn.Module):
    """A conv/linear whose input (per tensor, uint8) and weight (per channel, int8) are
    fake-quantised: the layer computes as it would in int8, in floating point."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        if not isinstance(layer, nn.Conv2d | nn.Linear):
            raise ValueError(f"FakeQuantLayer wraps Conv2d or Linear, got {type(layer).__name__}")
        self.layer = layer
        self.act_fq = FakeQuant(ACT_SCHEME)
        self.weight_fq = FakeQuant(WEIGHT_SCHEME)

    def freeze(self) -> None:
        """Stop observing: the calibrated ranges stay fixed."""
        self.act_fq.observe = self.weight_fq.observe = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_hat = self.weight_fq(self.layer.weight)  # same shape as the weight
        x_hat = self.act_fq(x)  # same shape as x
        return torch.func.functional_call(self.layer, {"weight": w_hat}, (x_hat,))


def quantisable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d and Linear modules, in order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@torch.no_grad()
def fake_quantize_layers(
    model: nn.Module, names: Sequence[str], calibration: Sequence[torch.Tensor]
) -> nn.Module:
    """A copy of ``model`` with layers ``names`` fake-quantised, their ranges calibrated on
    ``calibration`` batches and then frozen."""
    out = copy.deepcopy(model).eval()
    wrapped = []
    for name in names:
        layer = FakeQuantLayer(out.get_submodule(name))
        _replace(out, name, layer)
        wrapped.append(layer)
    for x in calibration:
        out(x)
    for layer in wrapped:
        layer.freeze()
    return out


def sensitivity(
    model: nn.Module,
    calibration: Sequence[torch.Tensor],
    evaluate: Callable[[nn.Module], Any],
    names: Sequence[str] | None = None,
    progress: Callable[[Iterable], Iterable] = iter,
) -> dict[str, Any]:
    """``evaluate`` (e.g. accuracy) of the model with only layer ``n`` fake-quantised, per
    layer ``n`` (default: every Conv2d/Linear). Per-channel weight scales make the result the
    same with or without BN folded into the conv (a channel's scale moves with its weights)."""
    names = list(names) if names is not None else quantisable_layers(model)
    if not names:
        raise ValueError("no layers to quantise (expected Conv2d or Linear modules)")
    return {n: evaluate(fake_quantize_layers(model, [n], calibration)) for n in progress(names)}


# ----------------------------------------------------------------------------- measurement


def image_data(preprocessing: dict[str, Any], dataset: str, **kwargs: Any) -> ImageData:
    """Layer 3's data module for ``dataset`` with the normalisation and classes a checkpoint's
    ``preprocessing`` states (what the model was trained on), plus ``ImageData`` ``kwargs``."""
    if preprocessing.get("kind") != "image":
        raise ValueError(f"preprocessing kind {preprocessing.get('kind')!r}: expected 'image'")
    return ImageData(
        name=dataset,
        shape=list(preprocessing["shape"]),
        classes=list(preprocessing["classes"]),
        mean=list(preprocessing["mean"]),
        std=list(preprocessing["std"]),
        **kwargs,
    )


@torch.inference_mode()
def mean_metrics(
    model: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Mean cross-entropy and accuracy over every target of ``loader``'s (x, y) batches (images:
    one per sample; language models: one per token), summed in float64 as layer 3's
    :class:`~layer3_framework.Classification` does."""
    loss, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        logits, target = out.reshape(-1, out.shape[-1]).float(), y.reshape(-1)
        loss += F.cross_entropy(logits, target, reduction="sum").double().item()
        correct += int((logits.argmax(-1) == target).sum())
        n += target.numel()
    if n == 0:
        raise ValueError("the loader yielded no batches")
    return {"loss": loss / n, "accuracy": correct / n}
