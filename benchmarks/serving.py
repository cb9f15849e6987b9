"""Serving speed: eager PyTorch vs TorchScript vs ONNX Runtime (fp32 and int8) on the registered
models, in one process with the same thread count for torch and ORT (``--threads``, default 1).

Per model and backend: latency at batch 1 (median of ``--repeats`` calls) and throughput at batch
32 (items/s, median over repeats), each beside eager's; for the GPT the forward is the prefill of
a 64-token prompt, and generation is timed twice: tokens/s with the KV cache (``start`` once,
then ``step``) and without it (every token re-runs the whole prefix). The denoiser's call is one
ε-prediction (one DDIM step). Models come from the registry (``--registry``, default
``runs/registry``); where a model is missing, a random-init one of the layer-4 size is built
and exported to a temporary registry, and the table says so.

Prints a table, then as its last line one JSON object: ``<model>_<backend>_latency_vs_eager``
(our time / eager's, < 1 is faster), ``<model>_<backend>_throughput_vs_eager`` (our items/s /
eager's, > 1 is faster), ``onnx_vs_eager_throughput`` (the classifier at batch 32, the issue's
headline), ``gpt_<backend>_tokens_per_s_cached`` / ``_uncached`` and ``gpt_cache_speedup``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from layer6_serving import runtime
from layer6_serving.registry import DEFAULT_ROOT, ModelRegistry

NAMES = {"resnet": "classifier", "ddpm": "denoiser", "gpt": "generator"}
BACKENDS = ("eager", "torchscript", "onnx", "onnx-int8")
PROMPT = 64
GEN_TOKENS = 48


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _call(model, kind: str, batch: int, rng) -> Callable[[], object]:
    """One model call at ``batch`` items."""
    if kind == "classifier":
        x = rng.random((batch, 3, 32, 32), dtype=np.float32)
        return lambda: model.predict(x)
    if kind == "denoiser":
        d = model.diffusion
        x = torch.randn(batch, *d.shape)
        t = torch.full((batch,), d.schedule.timesteps // 2)
        y = torch.arange(batch) % d.num_classes

        def eps() -> torch.Tensor:
            with torch.inference_mode():  # as in Diffusion.sample: no autograd for eager either
                return d.eps(x, t, y, None)

        return eps
    ids = rng.integers(0, model.vocab_size, size=(batch, min(PROMPT, model.context)))
    return lambda: model.start(ids)


def _generation(gen: runtime.Generator, rng, repeats: int) -> tuple[float, float]:
    """Tokens/s greedy from a prompt, with the KV cache and re-running the prefix each token."""
    prompt = rng.integers(0, gen.vocab_size, size=min(PROMPT, gen.context - GEN_TOKENS)).tolist()

    def cached() -> None:
        for _ in gen.tokens(prompt, GEN_TOKENS, temperature=0.0):
            pass

    def uncached() -> None:
        ids = list(prompt)
        for _ in range(GEN_TOKENS):
            logits, _ = gen.start(np.array([ids[-gen.context :]]))
            ids.append(int(logits[0].argmax()))

    reps = max(1, repeats // 10)
    return (
        GEN_TOKENS / median_seconds(cached, reps, 1),
        GEN_TOKENS / median_seconds(uncached, reps, 1),
    )


def _fallback_registry(missing: list[str]) -> ModelRegistry:
    """Random-init layer-4-sized models, exported to a temporary registry."""
    from layer3_framework.checkpoint import save_checkpoint
    from layer4_architectures.generative.unet import UNet
    from layer4_architectures.sequence.data import CharTokenizer
    from layer4_architectures.sequence.gpt import GPT
    from layer4_architectures.vision.resnet import ResNet
    from layer6_serving.export import export_bundle

    tmp = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    tok = CharTokenizer([chr(c) for c in range(32, 127)])
    image = {
        "shape": [3, 32, 32],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "classes": [str(i) for i in range(10)],
    }
    specs = {
        "resnet": (ResNet, {"widths": [16, 32, 64], "blocks": [3, 3, 3]}, image),
        "ddpm": (UNet, {"base_channels": 16, "timesteps": 100}, {}),
        "gpt": (
            GPT,
            {
                "vocab_size": tok.vocab_size,
                "block_size": 128,
                "n_layer": 4,
                "n_head": 4,
                "n_embd": 128,
            },
            {"tokenizer_kind": "char", "tokenizer": tok.to_dict()},
        ),
    }
    registry = ModelRegistry(tmp / "registry")
    for name in missing:
        cls, kwargs, pre = specs[name]
        target = f"{cls.__module__}.{cls.__name__}"
        path = tmp / name / "step_00000000.safetensors"
        save_checkpoint(
            path,
            model=cls(**kwargs),
            step=0,
            model_spec={"target": target, "kwargs": kwargs, "preprocessing": pre},
        )
        export_bundle(registry, name, path.parent, NAMES[name], int8=name != "ddpm")
    return registry


def measure(registry: ModelRegistry, name: str, threads: int, repeats: int) -> list[dict]:
    kind = NAMES[name]
    rows = []
    for backend in BACKENDS:
        if backend not in registry.manifest(name)["files"]:
            continue
        model = runtime.load(registry, name, backend=backend, threads=threads)
        rng = np.random.default_rng(0)
        row = {
            "model": name,
            "backend": backend,
            "latency_ms": 1e3 * median_seconds(_call(model, kind, 1, rng), repeats),
            "throughput": 32 / median_seconds(_call(model, kind, 32, rng), max(3, repeats // 5)),
        }
        if kind == "generator":
            row["tok_s_cached"], row["tok_s_uncached"] = _generation(model, rng, repeats)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    registry = ModelRegistry(args.registry or DEFAULT_ROOT())
    missing = [n for n in NAMES if n not in registry.names()]
    other = _fallback_registry(missing) if missing else None
    rows = []
    for name in NAMES:
        reg = other if name in missing else registry
        rows += measure(reg, name, args.threads, args.repeats)
    figures = report(rows, missing, registry, args.threads)
    print(json.dumps(figures))


def report(rows: list[dict], missing: list[str], registry: ModelRegistry, threads: int) -> dict:
    eager = {r["model"]: r for r in rows if r["backend"] == "eager"}
    figures: dict[str, float] = {}
    print(
        f"serving benchmark: torch and ONNX Runtime with {threads} thread(s); models from "
        f"{registry.root}" + (f" except {missing} (random init)" if missing else "")
    )
    print(
        f"{'model':<7} {'backend':<12} {'lat b1 ms':>10} {'vs eager':>9} {'items/s b32':>12} "
        f"{'x eager':>8} {'tok/s cache':>12} {'no cache':>9}"
    )
    for r in rows:
        e = eager[r["model"]]
        lat, thr = r["latency_ms"] / e["latency_ms"], r["throughput"] / e["throughput"]
        gen = (
            f"{r['tok_s_cached']:>12.1f} {r['tok_s_uncached']:>9.1f}" if "tok_s_cached" in r else ""
        )
        print(
            f"{r['model']:<7} {r['backend']:<12} {r['latency_ms']:>10.2f} {lat:>9.2f} "
            f"{r['throughput']:>12.1f} {thr:>8.2f} {gen}"
        )
        key = f"{r['model']}_{r['backend'].replace('-', '_')}"
        if r["backend"] != "eager":
            figures[f"{key}_latency_vs_eager"] = round(lat, 3)
            figures[f"{key}_throughput_vs_eager"] = round(thr, 3)
        if "tok_s_cached" in r:
            figures[f"{key}_tokens_per_s_cached"] = round(r["tok_s_cached"], 1)
            figures[f"{key}_tokens_per_s_uncached"] = round(r["tok_s_uncached"], 1)
    onnx = {r["model"]: r for r in rows if r["backend"] == "onnx"}
    figures["onnx_vs_eager_throughput"] = round(
        onnx["resnet"]["throughput"] / eager["resnet"]["throughput"], 3
    )
    g = onnx["gpt"]
    figures["gpt_cache_speedup"] = round(g["tok_s_cached"] / g["tok_s_uncached"], 3)
    figures["threads"] = threads
    figures["random_init_models"] = len(missing)
    return figures


if __name__ == "__main__":
    main()
