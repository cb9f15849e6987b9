"""``profiling``: torch.profiler on the trainer's steps for the CIFAR CNN (top-operator table,
Chrome trace), then samples/sec for fp32 and bf16 autocast, eager and ``torch.compile``d.

Speed-ups are properties of the hardware, not of the code: bf16 autocast on a CPU is fast with
bf16 instructions (AVX-512 BF16, AMX) and emulated, several times slower, without them. So every
figure is recorded beside the CPU model, whether it has those instructions, the torch version and
its thread count (and the GPU's name on CUDA).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from layer0_math.lab import RunContext, cpu_info, deliverable
from layer3_framework.device import resolve_device
from layer3_framework.ports import CifarCNN
from layer3_framework.trainer import Trainer, TrainerConfig

Batches = list[tuple[torch.Tensor, torch.Tensor]]


@deliverable(
    quick={"batch_size": 128, "warmup": 2, "steps": 8, "profile_steps": 3, "compile": True},
    full={"batch_size": 256, "warmup": 5, "steps": 50, "profile_steps": 5},
    headline=["samples_per_sec_fp32", "bf16_speedup", "compile_speedup", "cpu_bf16_instructions"],
)
def profiling(ctx: RunContext) -> dict[str, Any]:
    """torch.profiler on CNN training steps; throughput with and without compile and bf16."""
    device = resolve_device(ctx.device)
    batches = _random_batches(ctx.seed, ctx.config["batch_size"])
    metrics: dict[str, Any] = {"device": str(device), **hardware(device)}
    metrics |= _profile(ctx, device, batches)
    variants = _variants(ctx.config, device, batches)
    ctx.write_json("throughput.json", variants)
    metrics |= _throughput_metrics(variants)
    if device.type == "cuda":
        metrics |= _cuda_metrics()
    ctx.write_text("summary.md", _summary(variants, metrics))
    return metrics


def hardware(device: torch.device) -> dict[str, Any]:
    """What the speed figures depend on: CPU model and bf16 instructions, torch, threads, GPU."""
    cpu = cpu_info()
    info: dict[str, Any] = {
        "cpu_model": cpu["model"],
        "cpu_bf16_instructions": int(cpu["bf16"]),
        "cpu_bf16_flags": " ".join(cpu["flags_bf16"]) or "none",
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu_name"] = torch.cuda.get_device_name(device)
    return info


def _random_batches(seed: int, batch_size: int) -> Batches:
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch_size, 3, 32, 32, generator=g),
            torch.randint(0, 10, (batch_size,), generator=g),
        )
        for _ in range(4)
    ]


def _sgd_trainer(device: torch.device, batches: Batches, cfg: TrainerConfig) -> Trainer:
    model = CifarCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return Trainer(model, opt, batches, cfg, device=device)


def _profile(ctx: RunContext, device: torch.device, batches: Batches) -> dict[str, Any]:
    """A few trainer steps under torch.profiler (after one warm-up step outside it)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    tr = _sgd_trainer(device, batches, TrainerConfig(max_steps=1, progress=False))
    tr.fit()
    tr.cfg.max_steps = 1 + ctx.config["profile_steps"]
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        tr.fit()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    ctx.write_text("top_operators.txt", averages.table(sort_by=sort, row_limit=20))
    prof.export_chrome_trace(str(ctx.path("trace.json")))
    top = max(averages, key=lambda e: e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in averages)
    return {"top_operator": top.key, "top_operator_share": top.self_cpu_time_total / total}


def _throughput(
    device: torch.device, batches: Batches, precision: str, compiled: bool, warmup: int, steps: int
) -> dict[str, float]:
    """Samples/sec of the trainer's step for one (precision, compile) variant."""
    torch.manual_seed(0)
    cfg = TrainerConfig(
        max_steps=warmup, precision=precision, compile=compiled, log_every=10**9, progress=False
    )
    tr = _sgd_trainer(device, batches, cfg)
    t0 = time.perf_counter()
    tr.fit()  # warm-up, including compilation
    _sync(device)
    warm_seconds = time.perf_counter() - t0
    tr.cfg.max_steps = warmup + steps
    t0 = time.perf_counter()
    tr.fit()
    _sync(device)
    seconds = time.perf_counter() - t0
    batch = batches[0][0].shape[0]
    return {"samples_per_sec": steps * batch / seconds, "warmup_seconds": warm_seconds}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _variants(cfg: dict[str, Any], device: torch.device, batches: Batches) -> dict[str, dict]:
    """Throughput per variant; a variant that cannot run (no compiler, no bf16) records why."""
    variants: dict[str, dict] = {}
    for precision in ("fp32", "bf16"):
        for compiled in (False, True) if cfg["compile"] else (False,):
            name = f"{precision}{'_compiled' if compiled else ''}"
            try:
                variants[name] = _throughput(
                    device, batches, precision, compiled, cfg["warmup"], cfg["steps"]
                )
            except Exception as e:  # no compiler, unsupported dtype: record it, do not crash
                variants[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    return variants


def _throughput_metrics(variants: dict[str, dict]) -> dict[str, Any]:
    base = variants["fp32"]["samples_per_sec"]
    metrics: dict[str, Any] = {"samples_per_sec_fp32": base}
    for name, v in variants.items():
        if "error" in v:
            metrics[f"{name}_error"] = v["error"]
        else:
            metrics[f"samples_per_sec_{name}"] = v["samples_per_sec"]
            metrics[f"warmup_seconds_{name}"] = v["warmup_seconds"]
    bf16 = variants["bf16"]
    metrics["bf16_speedup"] = bf16["samples_per_sec"] / base if "error" not in bf16 else 0.0
    compiled = variants.get("fp32_compiled", {"error": "not run (compile: false)"})
    metrics["compile_speedup"] = (
        compiled["samples_per_sec"] / base if "error" not in compiled else 0.0
    )
    return metrics


def _cuda_metrics() -> dict[str, Any]:
    metrics: dict[str, Any] = {"cuda_peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20}
    try:
        metrics["gpu_utilization_percent"] = float(torch.cuda.utilization())
    except Exception as e:  # pynvml missing: say so
        metrics["gpu_utilization_note"] = f"unavailable: {type(e).__name__}"
    return metrics


def _summary(variants: dict[str, dict], metrics: dict[str, Any]) -> str:
    bf16 = "with" if metrics["cpu_bf16_instructions"] else "without"
    where = metrics.get("gpu_name", f"CPU {metrics['cpu_model']} ({bf16} bf16 instructions)")
    lines = [
        f"Measured on {where}, torch {metrics['torch_version']}, "
        f"{metrics['torch_threads']} threads.",
        "",
        "| variant | samples/sec | warm-up s |",
        "| --- | --- | --- |",
    ]
    for n, v in variants.items():
        if "error" in v:
            lines.append(f"| {n} | failed: {v['error']} | |")
        else:
            lines.append(f"| {n} | {v['samples_per_sec']:.1f} | {v['warmup_seconds']:.1f} |")
    return "\n".join(lines) + "\n"
