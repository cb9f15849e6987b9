"""``distributed``: data parallelism under ``torchrun`` (2 ranks, gloo, this CPU) against one
process, the memory ZeRO saves, and what the communication costs at 2…64 ranks.

Model and data: layer 3's MLP (784 → ``hidden`` → 10, ReLU) on real MNIST digits (normalised,
flattened), AdamW. Parts, each compared with something independent:

1. **Parity.** The one-process run (in this process) and, in one 2-rank torchrun job, DDP,
   FSDP2 (``fully_shard``) and ZeRO-1 (:mod:`~layer5_training.distributed.zero`) on the same
   global batches (each rank ``B/2`` rows). Gradients at every step vs one process
   (``ddp_max_grad_diff``, ``fsdp_max_grad_diff``), ZeRO-1's parameters after every step vs
   DDP's (``zero1_max_param_diff``), each rank's optimiser-state bytes vs ZeRO's ``8·Ψ/N``
   (fp32 Adam; ``zero1_state_bytes_vs_formula``, the mean over ranks).
2. **Accumulation.** ``k`` micro-batches vs the whole batch (gradient), and layer 3's Trainer
   with ``grad_accum = k`` vs batch ``k·b`` (parameters after the run).
3. **Communication.** All-reduce times over message sizes on loopback (gloo), bus bandwidth,
   a fitted ``α + M/β`` ring model; the step time of the same global batch on 1 rank and on
   2 ranks (both with one thread per rank, ``OMP_NUM_THREADS=1``); the predicted speed-up at
   N = 2…64 (with and without overlapping backward) and its N = 2 value against the measurement.
   The model assumes each rank computes as fast as the lone process; on a shared 2-core machine
   they do not (memory bandwidth, gloo's own threads), so the 2 ranks also run the compute alone
   (no gradient exchange): ``compute_contention`` = that step time / (t_1/2), and the N = 2
   prediction is repeated with the measured 2-rank compute time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer0_math.datasets import load_mnist
from layer0_math.lab import RunContext, deliverable, pyplot
from layer5_training.distributed.accumulation import (
    accumulated_gradient,
    batch_gradient,
    trainer_params,
)
from layer5_training.distributed.comm import (
    fit_alpha_beta,
    predicted_speedup,
    ring_allreduce_seconds,
)
from layer5_training.distributed.launch import launch, read_tensors
from layer5_training.distributed.reference import Problem, trajectory
from layer5_training.distributed.zero import STAGES, bytes_per_rank

WORKER = "layer5_training.distributed.worker"
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # each rank (and the 1-rank baseline) on one core
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@deliverable(
    quick={
        "hidden": [128],
        "steps": 10,
        "global_batch": 64,
        "lr": 1.0e-3,
        "micro_batches": 4,
        "timing_steps": 40,
        "timing_warmup": 5,
        "timing_batch": 2048,
        "sizes": [4096, 65536, 1048576, 4194304, 16777216],
        "reps": 10,
        "max_n": 64,
        "timeout_s": 300,
    },
    full={"hidden": [1024, 1024], "steps": 50, "timing_steps": 100, "timing_batch": 8192},
    headline=[
        "ddp_max_grad_diff",
        "fsdp_max_grad_diff",
        "zero1_max_param_diff",
        "zero1_state_bytes_vs_formula",
        "speedup_measured_n2",
        "speedup_predicted_n2",
    ],
)
def distributed(ctx: RunContext) -> dict[str, Any]:
    """DDP, FSDP2 and ZeRO-1 against one process; accumulation; the communication model."""
    cfg = ctx.config
    x, y = _mnist(max(cfg["steps"] * cfg["global_batch"], cfg["timing_batch"]))
    parity = _problem(cfg, x, y, cfg["steps"], cfg["global_batch"])
    timing = _problem(cfg, x, y, cfg["timing_steps"], cfg["timing_batch"])
    job = ctx.path("torchrun")
    job.mkdir(exist_ok=True)
    parity.save(job / "parity.pt")
    timing.save(job / "timing.pt")
    steps = ctx.progress(total=4, desc="distributed")
    reference = _one_process(parity)
    steps.update()
    results, traces = _two_ranks(cfg, job, _grad_bytes(parity))
    steps.update()
    one_rank = _one_rank_timing(cfg, job)
    steps.update()
    accumulation = _accumulation(parity, cfg["micro_batches"])
    steps.update()
    steps.close()
    metrics = {
        **_parity_metrics(reference, traces, results, parity),
        **accumulation,
        **_comm_metrics(cfg, results, traces, one_rank, _grad_bytes(parity)),
        "model": f"MLP 784-{'-'.join(map(str, cfg['hidden']))}-10 on MNIST, AdamW",
        "hardware": "2-core CPU, gloo over loopback, 1 thread per rank",
    }
    _plots(ctx, reference, traces, metrics, _psi(parity))
    ctx.write_text("table.md", _table(metrics))
    return metrics


# ----------------------------------------------------------------------------- set-up


def _mnist(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` MNIST training digits, normalised and flattened: (n, 784), (n,)."""
    images, labels = load_mnist("train")
    if n > len(images):
        raise ValueError(f"the config needs {n} MNIST samples; the training set has {len(images)}")
    x = (images[:n].reshape(n, -1).astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    return torch.from_numpy(x), torch.from_numpy(labels[:n].astype(np.int64))


def _problem(cfg: dict, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> Problem:
    return Problem(
        x, y, 10, list(cfg["hidden"]), steps=steps, global_batch=batch, lr=cfg["lr"], seed=0
    )


def _psi(problem: Problem) -> int:
    return sum(p.numel() for p in problem.build_model().parameters())


def _grad_bytes(problem: Problem) -> int:
    return 4 * _psi(problem)  # float32 gradients


def _one_process(problem: Problem) -> dict[str, torch.Tensor]:
    model = problem.build_model()
    return trajectory(model, problem.make_optimizer(list(model.parameters())), problem)


def _two_ranks(cfg: dict, job: Path, grad_bytes: int) -> tuple[list[dict], dict]:
    """One 2-rank job: DDP, FSDP2, ZeRO-1 parity, DDP timing, the all-reduce sweep."""
    parts = [
        {"name": "ddp", "key": "ddp"},
        {"name": "fsdp", "key": "fsdp"},
        {"name": "zero1", "key": "zero1"},
        {"name": "ddp", "key": "timing", "record": False, "problem": str(job / "timing.pt")},
        {"name": "compute", "key": "compute", "problem": str(job / "timing.pt")},
        {
            "name": "allreduce",
            "key": "allreduce",
            "sizes": sorted({*cfg["sizes"], grad_bytes}),
            "reps": cfg["reps"],
        },
    ]
    spec = {"problem": str(job / "parity.pt"), "timeout_s": 60, "parts": parts}
    out = job / "two_ranks"
    results = launch(WORKER, spec, out, nproc=2, timeout_s=cfg["timeout_s"], env=ONE_THREAD)
    return results, read_tensors(out)


def _one_rank_timing(cfg: dict, job: Path) -> torch.Tensor:
    """Step seconds of the timing problem on one rank (torchrun, world size 1, one thread)."""
    spec = {"problem": str(job / "timing.pt"), "parts": [{"name": "ddp", "record": False}]}
    out = job / "one_rank"
    launch(WORKER, spec, out, nproc=1, timeout_s=cfg["timeout_s"], env=ONE_THREAD)
    return read_tensors(out)["ddp/seconds"]


# ----------------------------------------------------------------------------- measurements


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _parity_metrics(
    reference: dict, traces: dict, results: list[dict], problem: Problem
) -> dict[str, Any]:
    psi = _psi(problem)
    infos = [r["parts"]["zero1"] for r in results]
    world = len(results)
    measured = float(np.mean([i["state_bytes"] for i in infos]))
    predicted = 8.0 * psi / world
    return {
        "ddp_max_grad_diff": _max_diff(traces["ddp/grads"], reference["grads"]),
        "ddp_final_loss_diff": abs(float(traces["ddp/loss"][-1] - reference["loss"][-1])),
        "fsdp_max_grad_diff": _max_diff(traces["fsdp/grads"], reference["grads"]),
        "fsdp_max_param_diff": _max_diff(traces["fsdp/params"], reference["params"]),
        "zero1_max_param_diff": _max_diff(traces["zero1/params"], traces["ddp/params"]),
        "zero1_state_bytes_per_rank": [i["state_bytes"] for i in infos],
        "zero1_state_bytes_predicted": predicted,
        "zero1_state_bytes_vs_formula": measured / predicted,
        "ddp_state_bytes_per_rank": 8 * psi,
        "params": psi,
        "world_size": world,
        "one_process_final_loss": float(reference["loss"][-1]),
        "parity_steps": problem.steps,
        "global_batch": problem.global_batch,
    }


def _accumulation(problem: Problem, k: int) -> dict[str, float]:
    x, y = problem.shard(0)
    model = problem.build_model()
    full = batch_gradient(model, x, y)
    micro = problem.global_batch // k
    big = trainer_params(problem, problem.global_batch, 1)
    return {
        "accum_max_grad_diff": _max_diff(accumulated_gradient(model, x, y, k), full),
        "trainer_accum_max_param_diff": _max_diff(trainer_params(problem, micro, k), big),
        "micro_batches": k,
    }


def _median_step(seconds: torch.Tensor, warmup: int) -> float:
    return float(seconds[warmup:].median())


def _comm_metrics(
    cfg: dict, results: list[dict], traces: dict, one_rank: torch.Tensor, grad_bytes: int
) -> dict[str, Any]:
    bench = results[0]["parts"]["allreduce"]
    sizes, seconds = np.array(bench["sizes"], float), np.array(bench["seconds"])
    alpha, beta = fit_alpha_beta(sizes, seconds, 2)
    t1 = _median_step(one_rank, cfg["timing_warmup"])
    t2 = _median_step(traces["timing/seconds"], cfg["timing_warmup"])
    t2_compute = _median_step(traces["compute/seconds"], cfg["timing_warmup"])
    ns = list(range(1, cfg["max_n"] + 1))

    def curve(overlap: bool) -> list[float]:
        return [
            predicted_speedup(n, t1, grad_bytes, beta, latency=alpha, overlap=overlap) for n in ns
        ]

    plain, hidden = curve(False), curve(True)
    at_grad = bench["sizes"].index(grad_bytes)
    return {
        "allreduce_sizes": bench["sizes"],
        "allreduce_seconds": bench["seconds"],
        "busbw_bytes_per_s": bench["busbw"],
        "busbw_at_grad_size": bench["busbw"][at_grad],
        "grad_bytes": grad_bytes,
        "alpha_s": alpha,
        "beta_bytes_per_s": beta,
        "step_seconds_1rank": t1,
        "step_seconds_2ranks": t2,
        "step_seconds_2ranks_compute_only": t2_compute,
        "compute_contention": t2_compute / (t1 / 2),  # 1: two ranks compute as fast as two cores
        "speedup_predicted_n2_with_contention": t1
        / (t2_compute + ring_allreduce_seconds(grad_bytes, 2, beta, alpha)),
        "samples_per_sec_1rank": cfg["timing_batch"] / t1,
        "samples_per_sec_2ranks": cfg["timing_batch"] / t2,
        "speedup_measured_n2": t1 / t2,
        "speedup_predicted_n2": plain[1],
        "speedup_predicted_n2_overlap": hidden[1],
        "speedup_n": ns,
        "speedup_predicted": plain,
        "speedup_predicted_overlap": hidden,
        "timing_batch": cfg["timing_batch"],
    }


# ----------------------------------------------------------------------------- report


def _plots(ctx: RunContext, reference: dict, traces: dict, m: dict, psi: int) -> None:
    _plot_parity(ctx, reference, traces)
    _plot_bandwidth(ctx, m)
    _plot_speedup(ctx, m)
    _plot_zero_memory(ctx, m, psi)


def _per_step(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return np.maximum((a - b).abs().amax(dim=1).numpy(), 1e-12)  # log scale: 0 drawn at 1e-12


def _plot_parity(ctx: RunContext, reference: dict, traces: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps = np.arange(1, reference["grads"].shape[0] + 1)
    ax.semilogy(steps, _per_step(traces["ddp/grads"], reference["grads"]), "o-", label="DDP grads")
    fsdp = _per_step(traces["fsdp/grads"], reference["grads"])
    ax.semilogy(steps, fsdp, "s--", label="FSDP2 grads")
    zero = _per_step(traces["zero1/params"], traces["ddp/params"])
    ax.semilogy(steps, zero, "^-", label="ZeRO-1 params vs DDP params")
    ax.axhline(1e-6, color="r", ls=":", label="tolerance 1e-6")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("max |difference| (0 drawn at 1e-12)")
    ax.set_title("2 ranks (gloo) vs one process, same global batch")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "parity.png")


def _plot_bandwidth(ctx: RunContext, m: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = np.array(m["allreduce_sizes"], float)
    ax.semilogx(sizes, np.array(m["busbw_bytes_per_s"]) / 1e9, "o-", label="measured busbw")
    model = sizes / (2 * m["alpha_s"] + sizes / m["beta_bytes_per_s"])  # busbw of the fit, N=2
    ax.semilogx(
        sizes,
        model / 1e9,
        "--",
        label=f"fit α={m['alpha_s'] * 1e6:.0f} µs, β={m['beta_bytes_per_s'] / 1e9:.2f} GB/s",
    )
    ax.axvline(m["grad_bytes"], color="gray", ls=":", label="the MLP's gradient")
    ax.set_xlabel("all-reduce message (bytes, float32)")
    ax.set_ylabel("bus bandwidth 2(N−1)/N·M/t (GB/s)")
    ax.set_title("gloo all-reduce on loopback, 2 ranks")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "allreduce_bandwidth.png")


def _plot_speedup(ctx: RunContext, m: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ns = m["speedup_n"]
    ax.loglog(ns, ns, "k:", label="ideal (S = N)")
    ax.loglog(ns, m["speedup_predicted"], "-", label="ring model, no overlap")
    ax.loglog(ns, m["speedup_predicted_overlap"], "--", label="ring model, overlap with backward")
    ax.loglog([2], [m["speedup_measured_n2"]], "r*", ms=12, label="measured, 2 ranks")
    ax.set_xlabel("ranks N")
    ax.set_ylabel("speed-up t_1 / t_N (same global batch)")
    ax.set_title(f"Predicted speed-up, global batch {m['timing_batch']}, measured α, β")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ctx.savefig(fig, "speedup.png")


def _plot_zero_memory(ctx: RunContext, m: dict, psi: int) -> None:
    """ZeRO's per-rank model-state bytes vs N for this MLP (fp32 Adam: 4 + 4 + 8 bytes)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ns = np.arange(1, 65)
    for stage in STAGES:  # in fp32: 4-byte params and grads, K = 8: scale the fp16 formula
        per_rank = [2 * bytes_per_rank(psi, int(n), stage, k=4.0) for n in ns]
        ax.loglog(ns, per_rank, label=stage)
    ddp_state = 8 * psi
    ax.loglog(
        [m["world_size"]],
        [8 * psi + np.mean(m["zero1_state_bytes_per_rank"])],
        "r*",
        ms=12,
        label="ZeRO-1 measured (params + grads + state)",
    )
    ax.axhline(ddp_state, color="gray", ls=":", label="Adam state of one replica (8Ψ)")
    ax.set_xlabel("ranks N")
    ax.set_ylabel("model-state bytes per rank (fp32 Adam)")
    ax.set_title(f"ZeRO stages for Ψ = {psi:,} parameters")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ctx.savefig(fig, "zero_memory.png")


def _table(m: dict) -> str:
    rows = [
        ("ddp_max_grad_diff (every step, vs 1 process)", f"{m['ddp_max_grad_diff']:.2e}"),
        ("fsdp_max_grad_diff (every step, vs 1 process)", f"{m['fsdp_max_grad_diff']:.2e}"),
        ("zero1_max_param_diff (every step, vs DDP)", f"{m['zero1_max_param_diff']:.2e}"),
        (
            "zero1_state_bytes_vs_formula (mean rank / 8Ψ/N)",
            f"{m['zero1_state_bytes_vs_formula']:.6f}",
        ),
        ("accum_max_grad_diff", f"{m['accum_max_grad_diff']:.2e}"),
        ("trainer_accum_max_param_diff", f"{m['trainer_accum_max_param_diff']:.2e}"),
        ("busbw at the gradient size (GB/s)", f"{m['busbw_at_grad_size'] / 1e9:.3f}"),
        ("samples/s, 1 rank", f"{m['samples_per_sec_1rank']:.0f}"),
        ("samples/s, 2 ranks", f"{m['samples_per_sec_2ranks']:.0f}"),
        ("speed-up at N=2, measured", f"{m['speedup_measured_n2']:.3f}"),
        ("speed-up at N=2, predicted (no overlap)", f"{m['speedup_predicted_n2']:.3f}"),
        ("speed-up at N=2, predicted (overlap)", f"{m['speedup_predicted_n2_overlap']:.3f}"),
        ("step s, 1 rank / 2 ranks / 2 ranks compute only", _steps(m)),
        ("compute contention (2-rank compute / (t_1/2))", f"{m['compute_contention']:.3f}"),
        (
            "speed-up at N=2, predicted from the 2-rank compute time",
            f"{m['speedup_predicted_n2_with_contention']:.3f}",
        ),
    ]
    lines = ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + "\n"


def _steps(m: dict) -> str:
    keys = ("step_seconds_1rank", "step_seconds_2ranks", "step_seconds_2ranks_compute_only")
    return " / ".join(f"{m[k] * 1e3:.2f} ms" for k in keys)
