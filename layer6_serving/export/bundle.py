"""One way to package a model: :func:`export_bundle` turns a layer-3 checkpoint into a registry
version with its eager copy, its ONNX and TorchScript graphs, the parity figures that prove them
equal, and (optionally) an int8 ONNX graph.

A version's folder::

    checkpoint/step_XXXXXXXX.safetensors(.json)   the served weights (EMA for the DDPM) as a
                                                  layer-3 checkpoint: the eager backend
    onnx/<graph>.onnx  torchscript/<graph>.pt      graph = model, or prefill + step for the GPT
    onnx-int8/<graph>.onnx                        dynamic int8 (classifier, GPT) when asked
    manifest.json                                 kind, source, files, preprocessing, parity,
                                                  export seconds and sizes, + the caller's extra

Everything is written into the registry's temporary folder and checked there; a graph that
fails the ONNX checker or differs from eager PyTorch by more than the tolerance raises
:class:`~layer6_serving.export.parity.ParityError` and no version is registered. The tests'
``tiny_registry`` fixture and the ``export_models`` deliverable both call this function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from layer0_math.lab import read_manifest
from layer3_framework.checkpoint import latest_checkpoint, load_model, save_checkpoint
from layer6_serving.export.onnx_export import export_onnx
from layer6_serving.export.parity import (
    TOLERANCE,
    ParityError,
    cached_vs_full,
    graph_diff,
    greedy_tokens,
    reference_greedy,
)
from layer6_serving.export.quantize import quantize_int8
from layer6_serving.export.torchscript_export import export_torchscript
from layer6_serving.export.wrappers import ClassifierGraph, DenoiserGraph, GPTPrefill, GPTStep
from layer6_serving.registry import ModelRegistry
from layer6_serving.runtime import (
    QUANTIZED,
    Graph,
    GraphDecoder,
    OnnxGraph,
    TorchGraph,
    torchscript_graph,
)

FORMATS = ("onnx", "torchscript")
INT8_KINDS = ("classifier", "generator")  # dynamic quantisation helps matmul-heavy graphs
MAX_BATCH = 4096
Dim = torch.export.Dim


@dataclass
class GraphSpec:
    """One graph to export: the wrapper, an example call, names and dynamic axes."""

    role: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    inputs: list[str]
    outputs: list[str]
    dynamic: dict[str, Any]  # forward argument name -> {axis: Dim}, as torch.export takes it


@dataclass
class Plan:
    """A model's graphs and the inputs its parity is checked on ({role: arrays})."""

    preprocessing: dict[str, Any]
    graphs: list[GraphSpec]
    random: dict[str, tuple[np.ndarray, ...]]
    real: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- per kind


def flip_tta_of(config: dict | None) -> bool:
    """Whether the classifier was evaluated with flip test-time augmentation (its run config)."""
    return bool((config or {}).get("task", {}).get("flip_tta", False))


def _classifier_plan(model: nn.Module, spec: dict, config: dict, real: Any, rng) -> Plan:
    pre = dict(spec["preprocessing"])
    pre["flip_tta"] = flip_tta_of(config)
    c, h, w = pre["shape"]
    graph = ClassifierGraph(model, pre["mean"], pre["std"], pre["flip_tta"]).eval()
    batch = Dim("batch", min=1, max=MAX_BATCH)
    g = GraphSpec(
        "model", graph, (torch.rand(2, c, h, w),), ["images"], ["logits"], {"x": {0: batch}}
    )
    plan = Plan(pre, [g], {"model": (rng.random((3, c, h, w), dtype=np.float32),)})
    if real is not None:
        plan.real["model"] = (np.asarray(real, dtype=np.float32),)
    return plan


def _denoiser_inputs(x0: np.ndarray, cfg: Any, rng) -> tuple[np.ndarray, ...]:
    """(x_t, t, y) with x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε-shaped noise (a closed-form q_sample) at
    random t in 1..T and labels including the null class."""
    from layer4_architectures.generative.diffusion import NoiseSchedule

    n = x0.shape[0]
    t = rng.integers(1, cfg.timesteps + 1, size=n)
    ab = NoiseSchedule.make(cfg.schedule, cfg.timesteps).alpha_bars.numpy()[t][:, None, None, None]
    noise = rng.standard_normal(x0.shape)
    xt = (np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise).astype(np.float32)
    y = rng.integers(0, cfg.num_classes + 1, size=n)  # num_classes = the null class
    return xt, t.astype(np.int64), y.astype(np.int64)


def _denoiser_plan(model: nn.Module, spec: dict, config: dict, real: Any, rng) -> Plan:
    cfg = model.config
    pre = {
        **spec["preprocessing"],
        "schedule": cfg.schedule,
        "timesteps": cfg.timesteps,
        "num_classes": cfg.num_classes,
        "in_channels": cfg.in_channels,
        "image_size": cfg.image_size,
    }
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    batch = Dim("batch", min=1, max=MAX_BATCH)
    example = (
        torch.randn(2, *shape),
        torch.tensor([1, cfg.timesteps]),
        torch.tensor([0, cfg.num_classes]),
    )
    g = GraphSpec(
        "model",
        DenoiserGraph(model).eval(),
        example,
        ["x", "t", "y"],
        ["eps"],
        {"x": {0: batch}, "t": {0: batch}, "y": {0: batch}},
    )
    noise = rng.uniform(-1, 1, size=(3, *shape))
    plan = Plan(pre, [g], {"model": _denoiser_inputs(noise, cfg, rng)})
    if real is not None:  # real digits in [0, 1] -> model space [-1, 1], then noised
        x0 = np.asarray(real, dtype=np.float64).reshape(-1, *shape) * 2 - 1
        plan.real["model"] = _denoiser_inputs(x0, cfg, rng)
    return plan


def _gpt_inputs(gpt: nn.Module, ids: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    """Prefill inputs of ids, and step inputs continuing ids[:, :-1] by its last token."""
    t = ids.shape[1]
    with torch.inference_mode():
        _, k, v = GPTPrefill(gpt)(torch.from_numpy(ids[:, :-1]), torch.arange(t - 1))
    return {
        "prefill": (ids, np.arange(t, dtype=np.int64)),
        "step": (ids[:, -1:], np.array([t - 1], dtype=np.int64), k.numpy(), v.numpy()),
    }


def _generator_plan(model: nn.Module, spec: dict, config: dict, real: Any, rng) -> Plan:
    cfg = model.config
    pre = {**spec["preprocessing"], "block_size": cfg.block_size, "vocab_size": cfg.vocab_size}
    block = cfg.block_size
    batch = Dim("batch", min=1, max=MAX_BATCH)
    seq, past = Dim("seq", min=1, max=block), Dim("past", min=1, max=block - 1)
    t0 = min(8, block - 1)
    ids = torch.randint(0, cfg.vocab_size, (2, t0))
    # two distinct tensors: inputs that alias one another are traced as one input
    k, v = torch.randn(2, cfg.n_layer, 2, cfg.n_head, t0, cfg.head_dim).unbind(0)
    graphs = [
        GraphSpec(
            "prefill",
            GPTPrefill(model).eval(),
            (ids, torch.arange(t0)),
            ["ids", "pos"],
            ["logits", "keys", "values"],
            {"ids": {0: batch, 1: seq}, "pos": {0: seq}},
        ),
        GraphSpec(
            "step",
            GPTStep(model).eval(),
            (ids[:, :1], torch.tensor([t0]), k, v),
            ["ids", "pos", "past_k", "past_v"],
            ["logits", "keys", "values"],
            {
                "ids": {0: batch},
                "pos": None,
                "past_k": {1: batch, 3: past},
                "past_v": {1: batch, 3: past},
            },
        ),
    ]
    random_ids = rng.integers(0, cfg.vocab_size, size=(3, min(13, block)))
    plan = Plan(pre, graphs, _gpt_inputs(model, random_ids))
    if real is not None:
        plan.real = _gpt_inputs(model, np.asarray(real, dtype=np.int64)[:, :block])
    return plan


PLANS: dict[str, Callable[..., Plan]] = {
    "classifier": _classifier_plan,
    "denoiser": _denoiser_plan,
    "generator": _generator_plan,
}


# ----------------------------------------------------------------------------- the bundle


def checkpoint_sidecar(checkpoint: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint file under ``checkpoint`` (a run folder, a checkpoints/ folder or
    a file) and its sidecar."""
    path = Path(checkpoint)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = latest_checkpoint(folder)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {folder}")
        path = found
    return path, json.loads(path.with_name(path.name + ".json").read_text())


def _source(checkpoint: Path, file: Path, meta: dict, weights: str) -> dict[str, Any]:
    """Where the model came from: the run folder, its id and metrics, the checkpoint, step."""
    run = Path(checkpoint) if Path(checkpoint).is_dir() else file.parent
    man = read_manifest(run) or {}
    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
    return {
        "run": str(run),
        "run_id": man.get("run_id"),
        "parent_id": man.get("parent_id"),
        "checkpoint": file.name,
        "step": meta.get("step"),
        "weights": weights,
        "metrics": scalars,
    }


def _eager_graph(spec: GraphSpec) -> Graph:
    return TorchGraph(spec.module)


def _export_format(fmt: str, plan: Plan, out: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Write every graph of ``plan`` in ``fmt`` under ``out/fmt/``; files and export stats."""
    files, stats = {}, {}
    for g in plan.graphs:
        rel = f"{fmt}/{g.role}.{'onnx' if fmt == 'onnx' else 'pt'}"
        (out / fmt).mkdir(exist_ok=True)
        if fmt == "onnx":
            stats[g.role] = export_onnx(
                g.module, g.example, out / rel, g.inputs, g.outputs, g.dynamic
            )
        else:
            stats[g.role] = export_torchscript(g.module, g.example, out / rel)
        files[g.role] = rel
    return files, stats


def _load_graph(fmt: str, path: Path, threads: int) -> Graph:
    return OnnxGraph(path, threads) if fmt.startswith("onnx") else torchscript_graph(path)


def _parity(kind: str, model: nn.Module, plan: Plan, graphs: dict[str, Graph]) -> dict[str, Any]:
    """Max abs diffs of one format's graphs vs the eager wrappers, on random and real inputs."""
    eager = {g.role: _eager_graph(g) for g in plan.graphs}
    out: dict[str, Any] = {}
    for which, inputs in (("random", plan.random), ("real", plan.real)):
        for role, args in inputs.items():
            out[f"{role}_{which}"] = graph_diff(eager[role], graphs[role], args)
    if kind == "generator":
        decoder = GraphDecoder(graphs["prefill"], graphs["step"])
        ids = plan.real.get("prefill", plan.random["prefill"])[0]
        out["cache_vs_full"] = cached_vs_full(model, decoder, ids, max(1, ids.shape[1] // 2))
        # and one window of the whole context, stepped from position 1: every RoPE offset
        block = model.config.block_size
        window = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(1, block))
        out["cache_vs_full_context"] = cached_vs_full(model, decoder, window, 1)
        room = min(16, model.config.block_size - ids.shape[1])
        if room > 0:
            ours = greedy_tokens(decoder, ids, room)
            out["greedy_match"] = bool(np.array_equal(ours, reference_greedy(model, ids, room)))
    return out


def _worst(parity: dict[str, Any]) -> float:
    return max(v for k, v in parity.items() if isinstance(v, float))


def _check(fmt: str, parity: dict[str, Any], tolerance: float) -> None:
    worst = _worst(parity)
    if worst > tolerance or parity.get("greedy_match") is False:
        raise ParityError(
            f"{fmt} export differs from eager PyTorch: max abs diff {worst:.3g} "
            f"(tolerance {tolerance:g}), greedy tokens equal: {parity.get('greedy_match')}; "
            f"details {parity}"
        )


def _int8(plan: Plan, out: Path, files: dict[str, str], threads: int) -> tuple[dict, dict]:
    """Dynamic int8 copies of the ONNX graphs; their sizes and diffs vs fp32 (informational:
    quantisation is expected to differ, its accuracy change is measured on held-out data)."""
    q_files, stats = {}, {}
    (out / QUANTIZED).mkdir(exist_ok=True)
    for g in plan.graphs:
        rel = f"{QUANTIZED}/{g.role}.onnx"
        stats[g.role] = quantize_int8(out / files[g.role], out / rel)
        q_files[g.role] = rel
        fp32, int8 = OnnxGraph(out / files[g.role], threads), OnnxGraph(out / rel, threads)
        args = plan.real.get(g.role, plan.random[g.role])
        stats[g.role]["max_abs_diff_vs_fp32"] = graph_diff(fp32, int8, args)
    return q_files, stats


def _save_copy(model: nn.Module, meta: dict, spec: dict, source: dict, out: Path) -> str:
    """The served weights as a layer-3 checkpoint (EMA weights become the model's own)."""
    step = int(meta.get("step") or 0)
    save_checkpoint(
        out / "checkpoint" / f"step_{step:08d}.safetensors",
        model=model,
        step=step,
        model_spec=spec,
        config=meta.get("config"),
        extra={"source": source},
    )
    return "checkpoint"


def export_bundle(
    registry: ModelRegistry,
    name: str,
    checkpoint: Path,
    kind: str,
    *,
    weights: str = "model",
    formats: Sequence[str] = FORMATS,
    int8: bool = False,
    real: Any = None,
    extra: dict[str, Any] | None = None,
    tolerance: float = TOLERANCE,
    seed: int = 0,
    threads: int = 1,
) -> int:
    """Register ``checkpoint`` (a layer-3 checkpoint file or run folder) as a new version of
    ``name``; returns the version. ``real``: real inputs for the parity check (classifier:
    images (N, 3, H, W) in [0, 1]; denoiser: digits (N, 1, 28, 28) in [0, 1]; generator:
    prompt ids (N, T)). ``extra`` fields are merged into the manifest (e.g. ``reference``)."""
    if kind not in PLANS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(PLANS)}")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown export formats {bad}; expected some of {FORMATS}")
    file, meta = checkpoint_sidecar(checkpoint)
    model = load_model(file, weights=weights)
    spec = model.dlstack_spec
    torch.manual_seed(seed)
    plan = PLANS[kind](model, spec, meta.get("config") or {}, real, np.random.default_rng(seed))
    source = _source(checkpoint, file, meta, weights)

    def build(out: Path) -> dict[str, Any]:
        files: dict[str, Any] = {
            "eager": {"checkpoint": _save_copy(model, meta, spec, source, out)}
        }
        parity: dict[str, Any] = {"tolerance": tolerance}
        export: dict[str, Any] = {}
        for fmt in formats:
            files[fmt], export[fmt] = _export_format(fmt, plan, out)
            graphs = {
                role: _load_graph(fmt, out / rel, threads) for role, rel in files[fmt].items()
            }
            parity[fmt] = _parity(kind, model, plan, graphs)
            _check(fmt, parity[fmt], tolerance)
        if int8 and kind in INT8_KINDS and "onnx" in formats:
            files[QUANTIZED], export[QUANTIZED] = _int8(plan, out, files["onnx"], threads)
        measured = [_worst(parity[f]) for f in formats]
        parity["max_abs_diff"] = max(measured) if measured else None
        return {
            "kind": kind,
            "source": source,
            "files": files,
            "backends": list(files),
            "preprocessing": plan.preprocessing,
            "parity": parity,
            "export": export,
            "reference": {},
            **(extra or {}),
        }

    return registry.register(name, build)
