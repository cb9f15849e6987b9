"""Layer 3's deliverables, in run order: ``python -m layer3_framework [--preset quick|full]``.

- ``torch_ports``: the PyTorch twins of layer 1's MLP and layer 2's CifarCNN, CharLM (LSTM, GRU)
  and MultiHeadAttention load the scratch weights and match outputs and gradients in float64,
  and 100 SGD steps side by side end at the same weights.
- ``training_pipeline``: the CIFAR-10 CNN trained through the Hydra pipeline (W&B offline,
  checkpoints), then the two reproducibility demonstrations on a short sub-run: the same seed
  twice gives identical metrics, and a run interrupted and resumed ends bit for bit where the
  unbroken run ends.
- ``profiling``: torch.profiler on training steps (top-operator table, Chrome trace), throughput,
  and the effect of torch.compile and bf16 autocast.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from layer0_math.lab import RunContext, deliverable
from layer3_framework.checkpoint import read_checkpoint
from layer3_framework.device import resolve_device
from layer3_framework.loggers import read_jsonl
from layer3_framework.ports import (
    CifarCNN,
    compare_outputs_and_grads,
    compare_trajectories,
    port_cases,
)
from layer3_framework.train import compose, run
from layer3_framework.trainer import Trainer, TrainerConfig

CIFAR_TRAIN = 50_000


def _timing_free(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.items()
        if "seconds" not in k and "per_sec" not in k and k != "checkpoint"
    }


@deliverable(
    quick={"steps": 100, "lr": 0.05, "momentum": 0.9},
    headline=["max_abs_diff", "trajectory_max_diff"],
)
def torch_ports(ctx: RunContext) -> dict[str, Any]:
    """Scratch vs PyTorch twin, per model: output, gradient and 100-step trajectory differences."""
    cfg = ctx.config
    rows = []
    for case in ctx.progress(port_cases(ctx.seed), desc="ports"):
        out_diff, grad_diff = compare_outputs_and_grads(case)
        traj_diff, moved = compare_trajectories(case, cfg["steps"], cfg["lr"], cfg["momentum"])
        rows.append(
            {
                "model": case.name,
                "output_max_abs_diff": out_diff,
                "grad_max_abs_diff": grad_diff,
                "trajectory_max_diff": traj_diff,
                "trajectory_weight_change": moved,
            }
        )
    ctx.write_json("ports.json", rows)
    lines = [
        "| model | max abs diff output | max abs diff gradient | "
        f"weights after {cfg['steps']} SGD steps | largest weight change |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['model']} | {r['output_max_abs_diff']:.1e} | {r['grad_max_abs_diff']:.1e} | "
        f"{r['trajectory_max_diff']:.1e} | {r['trajectory_weight_change']:.2f} |"
        for r in rows
    ]
    ctx.write_text("ports.md", "\n".join(lines) + "\n")
    metrics: dict[str, Any] = {
        "max_abs_diff": max(max(r["output_max_abs_diff"], r["grad_max_abs_diff"]) for r in rows),
        "trajectory_max_diff": max(r["trajectory_max_diff"] for r in rows),
        "min_trajectory_weight_change": min(r["trajectory_weight_change"] for r in rows),
    }
    for r in rows:
        metrics[f"{r['model']}_max_abs_diff"] = max(
            r["output_max_abs_diff"], r["grad_max_abs_diff"]
        )
        metrics[f"{r['model']}_trajectory_max_diff"] = r["trajectory_max_diff"]
    return metrics


@deliverable(
    quick={
        "epochs": 3,
        "lr": 0.1,
        "batch_size": 128,
        "num_workers": 0,
        "demo_steps": 40,
        "demo_n_train": 2560,
        "data_source": "real",
    },
    full={
        "epochs": 30,
        "lr": 0.1,
        "batch_size": 128,
        "num_workers": 4,
        "demo_steps": 200,
        "demo_n_train": 12800,
        "data_source": "real",
    },
    headline=["test_accuracy", "identical_rerun", "identical_resume"],
)
def training_pipeline(ctx: RunContext) -> dict[str, Any]:
    """CIFAR-10 CNN through the pipeline, plus the rerun and resume demonstrations."""
    cfg = ctx.config
    n_train = CIFAR_TRAIN if cfg["data_source"] == "real" else cfg["demo_n_train"]
    steps = cfg["epochs"] * (n_train // cfg["batch_size"])
    common = [
        "experiment=cifar10_cnn",
        f"seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['batch_size']}",
        f"data.num_workers={cfg['num_workers']}",
        f"optim.lr={cfg['lr']}",
    ]
    if cfg["data_source"] != "real":
        common.append(f"data.n_train={n_train}")
    main = run(
        compose([*common, f"trainer.max_steps={steps}", "trainer.eval_every=0"]),
        ctx.out_dir / "main",
        device=ctx.device,
    )

    # the demonstrations: a short run on a subset (several epochs), checkpoints every quarter
    k = cfg["demo_steps"]
    demo = [
        *common,
        f"data.n_train={cfg['demo_n_train']}",
        "data.n_test=1000",
        f"optim.total_steps={k}",
        f"trainer.ckpt_every={k // 4}",
        "trainer.log_every=5",
        "logger=jsonl",
    ]
    a = run(compose([*demo, f"trainer.max_steps={k}"]), ctx.out_dir / "rerun_a", device=ctx.device)
    b = run(compose([*demo, f"trainer.max_steps={k}"]), ctx.out_dir / "rerun_b", device=ctx.device)
    logs = [
        [_timing_free(r) for r in read_jsonl(ctx.out_dir / d / "metrics.jsonl")]
        for d in ("rerun_a", "rerun_b")
    ]
    identical_rerun = _timing_free(a) == _timing_free(b) and logs[0] == logs[1]

    stop = 3 * k // 8  # mid-epoch, off the checkpoint grid: the resume must restore position
    run(compose([*demo, f"trainer.max_steps={stop}"]), ctx.out_dir / "killed", device=ctx.device)
    run(
        compose([*demo, f"trainer.max_steps={k}", f"resume={ctx.out_dir / 'killed'}"]),
        ctx.out_dir / "resumed",
        device=ctx.device,
    )
    ref, _ = read_checkpoint(Path(a["checkpoint"]))
    got, _ = read_checkpoint(ctx.out_dir / "resumed" / "checkpoints" / Path(a["checkpoint"]).name)
    diffs = {n: float((ref[n].double() - got[n].double()).abs().max()) for n in ref}
    identical_resume = all(torch.equal(ref[n], got[n]) for n in ref)
    table = {
        "rerun": {
            "metrics_a": _timing_free(a),
            "metrics_b": _timing_free(b),
            "identical": identical_rerun,
        },
        "resume": {
            "stopped_at": stop,
            "resumed_to": k,
            "max_abs_diff_per_tensor": diffs,
            "identical": identical_resume,
        },
    }
    ctx.write_json("identical.json", table)
    return {
        "test_accuracy": main["test_accuracy"],
        "test_loss": main["test_loss"],
        "steps": main["step"],
        "train_seconds": main["train_seconds"],
        "samples_per_sec": main["samples_per_sec"],
        "identical_rerun": int(identical_rerun),
        "identical_resume": int(identical_resume),
        "resume_max_abs_diff": max(diffs.values()),
    }


def _throughput(
    device: torch.device, batches: list, precision: str, compiled: bool, warmup: int, steps: int
) -> dict[str, float]:
    """Samples/sec of the trainer's step for one (precision, compile) variant."""
    torch.manual_seed(0)
    model = CifarCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    cfg = TrainerConfig(
        max_steps=warmup, precision=precision, compile=compiled, log_every=10**9, progress=False
    )
    tr = Trainer(model, opt, batches, cfg, device=device)
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


@deliverable(
    quick={"batch_size": 128, "warmup": 2, "steps": 8, "profile_steps": 3, "compile": True},
    full={"batch_size": 256, "warmup": 5, "steps": 50, "profile_steps": 5, "compile": True},
    headline=["samples_per_sec_fp32", "bf16_speedup", "compile_speedup"],
)
def profiling(ctx: RunContext) -> dict[str, Any]:
    """torch.profiler on CNN training steps; throughput with and without compile and bf16."""
    cfg = ctx.config
    device = resolve_device(ctx.device)
    g = torch.Generator().manual_seed(ctx.seed)
    bs = cfg["batch_size"]
    batches = [
        (torch.randn(bs, 3, 32, 32, generator=g), torch.randint(0, 10, (bs,), generator=g))
        for _ in range(4)
    ]
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    model = CifarCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tr = Trainer(model, opt, batches, TrainerConfig(max_steps=1, progress=False), device=device)
    tr.fit()  # warm-up outside the profile
    tr.cfg.max_steps = 1 + cfg["profile_steps"]
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        tr.fit()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    ctx.write_text("top_operators.txt", averages.table(sort_by=sort, row_limit=20))
    prof.export_chrome_trace(str(ctx.path("trace.json")))
    top = max(averages, key=lambda e: e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in averages)

    metrics: dict[str, Any] = {
        "device": str(device),
        "top_operator": top.key,
        "top_operator_share": top.self_cpu_time_total / total,
    }
    variants = {}
    for precision in ("fp32", "bf16"):
        for compiled in (False, True) if cfg["compile"] else (False,):
            name = f"{precision}{'_compiled' if compiled else ''}"
            try:
                variants[name] = _throughput(
                    device, batches, precision, compiled, cfg["warmup"], cfg["steps"]
                )
            except Exception as e:  # no compiler, unsupported dtype: record it, do not crash
                variants[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    ctx.write_json("throughput.json", variants)
    base = variants["fp32"]["samples_per_sec"]
    metrics["samples_per_sec_fp32"] = base
    for name, v in variants.items():
        if "error" in v:
            metrics[f"{name}_error"] = v["error"]
        else:
            metrics[f"samples_per_sec_{name}"] = v["samples_per_sec"]
            metrics[f"warmup_seconds_{name}"] = v["warmup_seconds"]
    metrics["bf16_speedup"] = (
        variants["bf16"]["samples_per_sec"] / base if "error" not in variants["bf16"] else 0.0
    )
    compiled = variants.get("fp32_compiled", {"error": "not run (compile: false)"})
    metrics["compile_speedup"] = (
        compiled["samples_per_sec"] / base if "error" not in compiled else 0.0
    )
    if device.type == "cuda":
        metrics["cuda_peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        try:
            metrics["gpu_utilization_percent"] = float(torch.cuda.utilization())
        except Exception as e:  # pynvml missing: say so
            metrics["gpu_utilization_note"] = f"unavailable: {type(e).__name__}"
    ctx.write_text(
        "summary.md",
        "\n".join(
            ["| variant | samples/sec | warm-up s |", "| --- | --- | --- |"]
            + [
                f"| {n} | {v.get('samples_per_sec', float('nan')):.1f} | "
                f"{v.get('warmup_seconds', float('nan')):.1f} |"
                if "error" not in v
                else f"| {n} | failed: {v['error']} | |"
                for n, v in variants.items()
            ]
        )
        + "\n",
    )
    json.dumps(metrics)  # metrics must be JSON-serialisable
    return metrics
