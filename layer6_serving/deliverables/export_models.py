"""``export_models``: layer 4's GPT, DDPM denoiser and ResNet packaged for serving, with proof.

1. Export each model into the registry (:func:`~layer6_serving.export.layer4.export_layer4`:
   eager checkpoint, ONNX by ``torch.onnx.export(dynamo=True)`` with dynamic axes, TorchScript by
   tracing, int8 ONNX for the GPT and the ResNet) after the ONNX checker and the parity checks
   (max abs diff vs eager on random and real inputs ≤ 1e-4; the GPT's cached steps vs its full
   forward; greedy tokens equal to ``GPT.generate``). The drift reference of the training data
   goes into each manifest.
2. Measure what int8 costs: the classifier's test accuracy on ``n_test`` CIFAR-10 test images
   (eager, ONNX fp32, ONNX int8) and the GPT's loss on ``n_val_windows`` held-out TinyStories
   windows (fp32 vs int8, through the KV-cache graphs), beside the file sizes.

Artifacts: ``table.md`` (per model and format: max abs diff, export seconds, size), the
registry versions in ``metrics.json``. Fails with the ``make layer4`` message when layer 4's runs
are missing.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from layer0_math.lab import RunContext, deliverable
from layer6_serving import runtime
from layer6_serving.artifacts import SOURCES
from layer6_serving.export.layer4 import cifar_test, export_layer4, tinystories_val_text
from layer6_serving.registry import DEFAULT_ROOT, ModelRegistry


@deliverable(
    quick={
        "registry": None,  # None: $DLSTACK_REGISTRY or runs/registry
        "kinds": ["generator", "denoiser", "classifier"],
        "int8": True,
        "n_real": 16,  # real inputs per parity check
        "n_test": 2000,  # CIFAR-10 test images for the fp32 vs int8 accuracy
        "n_val_windows": 16,  # TinyStories held-out windows (of block_size) for the loss
        "threads": 2,
    },
    full={"n_test": 10000, "n_val_windows": 128},
    headline=["max_abs_diff", "int8_accuracy_change", "int8_size_ratio", "export_seconds"],
)
def export_models(ctx: RunContext) -> dict[str, Any]:
    """Export, check, register; measure int8's accuracy, loss and size change."""
    cfg = ctx.config
    registry = ModelRegistry(cfg["registry"] or DEFAULT_ROOT())
    start = time.perf_counter()
    versions = export_layer4(
        registry, tuple(cfg["kinds"]), int8=cfg["int8"], n_real=cfg["n_real"], seed=ctx.seed
    )
    metrics: dict[str, Any] = {
        "export_seconds": time.perf_counter() - start,
        "registry": str(registry.root),
    }
    rows = []
    for kind, version in versions.items():
        man = registry.manifest(SOURCES[kind].registry_name, version)
        metrics.update(_parity_metrics(man))
        rows += _rows(man)
    metrics["max_abs_diff"] = max(
        metrics[f"{SOURCES[k].registry_name}_max_abs_diff"] for k in versions
    )
    metrics["onnx_checker"] = "passed"  # export_bundle raises otherwise
    if cfg["int8"] and "classifier" in versions:
        metrics.update(_classifier_int8(ctx, registry, versions["classifier"]))
    if cfg["int8"] and "generator" in versions:
        metrics.update(_generator_int8(ctx, registry, versions["generator"]))
    ctx.write_text("table.md", _table(rows, metrics))
    ctx.write_json("table.json", rows)
    return metrics


def _parity_metrics(man: dict[str, Any]) -> dict[str, Any]:
    name, parity = man["name"], man["parity"]
    out: dict[str, Any] = {
        f"{name}_version": man["version"],
        f"{name}_max_abs_diff": parity["max_abs_diff"],
    }
    for fmt in ("onnx", "torchscript"):
        if fmt in parity:
            out[f"{name}_{fmt}_max_abs_diff"] = max(
                v for v in parity[fmt].values() if isinstance(v, float)
            )
            if "greedy_match" in parity[fmt]:
                out[f"{name}_{fmt}_greedy_match"] = parity[fmt]["greedy_match"]
    for fmt, graphs in man["export"].items():
        out[f"{name}_{fmt}_export_seconds"] = sum(g.get("seconds", 0.0) for g in graphs.values())
        out[f"{name}_{fmt}_bytes"] = sum(g["bytes"] for g in graphs.values())
    return out


def _rows(man: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for fmt, graphs in man["export"].items():
        diffs = man["parity"].get(fmt, {})
        for role, stats in graphs.items():
            role_diffs = [
                v for k, v in diffs.items() if k.startswith(role) and isinstance(v, float)
            ]
            rows.append(
                {
                    "model": f"{man['name']} v{man['version']}",
                    "format": fmt,
                    "graph": role,
                    "max_abs_diff": max(role_diffs)
                    if role_diffs
                    else stats.get("max_abs_diff_vs_fp32"),
                    "vs": "eager" if role_diffs else "onnx fp32",
                    "seconds": stats.get("seconds"),
                    "mib": stats["bytes"] / 2**20,
                }
            )
    return rows


def _accuracy(model: runtime.Classifier, x: np.ndarray, y: np.ndarray) -> float:
    preds = np.concatenate([model.predict(c).argmax(1) for c in np.array_split(x, 20)])
    return float((preds == y).mean())


def _classifier_int8(ctx: RunContext, registry: ModelRegistry, version: int) -> dict[str, Any]:
    """Test accuracy on the same CIFAR-10 images: eager, ONNX fp32, ONNX int8."""
    x, y = cifar_test(ctx.config["n_test"], np.random.default_rng(ctx.seed + 1))
    acc = {
        b: _accuracy(runtime.load(registry, "resnet", version, b, ctx.config["threads"]), x, y)
        for b in ("eager", "onnx", runtime.QUANTIZED)
    }
    man = registry.manifest("resnet", version)
    ratio = man["export"][runtime.QUANTIZED]["model"]["size_ratio"]
    return {
        "resnet_accuracy_eager": acc["eager"],
        "resnet_accuracy_onnx": acc["onnx"],
        "resnet_accuracy_int8": acc[runtime.QUANTIZED],
        "int8_accuracy_change": acc[runtime.QUANTIZED] - acc["onnx"],
        "int8_size_ratio": ratio,
        "resnet_n_test": len(y),
        "layer4_resnet_accuracy": man["source"]["metrics"].get("test_accuracy"),
    }


def sequence_loss(gen: runtime.Generator, windows: np.ndarray) -> float:
    """Mean next-token cross-entropy (nats) of windows (B, T) through start + cached steps."""
    logits, state = gen.start(windows[:, :1])
    nll = []
    for t in range(1, windows.shape[1]):
        z = logits - logits.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))  # (B, V)
        nll.append(-logp[np.arange(len(windows)), windows[:, t]])
        if t < windows.shape[1] - 1:
            logits, state = gen.step(windows[:, t], state)
    return float(np.mean(nll))


def _generator_int8(ctx: RunContext, registry: ModelRegistry, version: int) -> dict[str, Any]:
    """Held-out loss (perplexity) of fp32 and int8 ONNX on the same TinyStories windows."""
    fp32 = runtime.load(registry, "gpt", version, "onnx", ctx.config["threads"])
    int8 = runtime.load(registry, "gpt", version, runtime.QUANTIZED, ctx.config["threads"])
    ids = np.asarray(fp32.encode(tinystories_val_text()), dtype=np.int64)
    t, n = fp32.context, ctx.config["n_val_windows"]
    starts = np.random.default_rng(ctx.seed + 2).choice(len(ids) - t, size=n, replace=False)
    windows = np.stack([ids[s : s + t] for s in starts])
    loss = {"fp32": sequence_loss(fp32, windows), "int8": sequence_loss(int8, windows)}
    sizes = registry.manifest("gpt", version)["export"][runtime.QUANTIZED]
    return {
        "gpt_val_loss_fp32": loss["fp32"],
        "gpt_val_loss_int8": loss["int8"],
        "int8_val_loss_change": loss["int8"] - loss["fp32"],
        "int8_perplexity_ratio": math.exp(loss["int8"] - loss["fp32"]),
        "gpt_int8_size_ratio": sum(g["bytes"] for g in sizes.values())
        / sum(g["bytes_fp32"] for g in sizes.values()),
        "gpt_val_tokens": int(windows.size - n),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if abs(v) < 1e-2 else f"{v:.3f}"
    return "" if v is None else str(v)


def _table(rows: list[dict[str, Any]], metrics: dict[str, Any]) -> str:
    head = (
        "| model | format | graph | max abs diff | vs | export s | MiB |\n"
        "|---|---|---|---|---|---|---|"
    )
    body = [
        f"| {r['model']} | {r['format']} | {r['graph']} | {_fmt(r['max_abs_diff'])} | {r['vs']} "
        f"| {_fmt(r['seconds'])} | {r['mib']:.3f} |"
        for r in rows
    ]
    extra = [
        f"- {k}: {_fmt(v)}"
        for k, v in metrics.items()
        if k.startswith(("int8", "resnet_acc", "gpt_val", "layer4_"))
    ]
    return "\n".join([head, *body, "", *extra]) + "\n"
