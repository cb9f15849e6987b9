"""Trainer overhead: the CIFAR-10 CNN through layer 3's Trainer vs a minimal hand-written loop.

Both train the same model (same initial weights) on the same pre-built batches of tensors in one
process, fp32 on the CPU (or the best device). Short rounds alternate (hand then trainer, then
trainer then hand, ...) so that a busy machine slows both alike; the overhead is the median over
rounds of the paired ratio trainer / hand - 1 (robust to a burst of load in one round; the
quartiles show the spread). Because that spread is wide on a shared machine, the trainer's own
per-step cost is also measured directly, on a model too small to do work, and expressed as a
fraction of a CNN step. The last line is JSON with ``trainer_overhead`` (target < 0.05).

    python benchmarks/framework.py [--steps 5] [--rounds 20] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from layer3_framework.device import resolve_device
from layer3_framework.ports import CifarCNN
from layer3_framework.trainer import Trainer, TrainerConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hand_loop(model, opt, batches, device) -> float:
    """The minimal loop: forward, loss, backward, step, zero_grad. Returns seconds."""
    model.train()
    _sync(device)
    t0 = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - t0


def trainer_loop(model, opt, batches, device) -> float:
    """The same steps through the Trainer (default logging cadence, progress bar on)."""
    cfg = TrainerConfig(max_steps=len(batches), log_every=50, progress=True)
    trainer = Trainer(model, opt, batches, cfg, device=device)
    _sync(device)
    t0 = time.perf_counter()
    trainer.fit()
    _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default=None)
    args = p.parse_args()
    device = resolve_device(args.device)
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(args.batch_size, 3, 32, 32, generator=g),
            torch.randint(0, 10, (args.batch_size,), generator=g),
        )
        for _ in range(args.steps)
    ]
    torch.manual_seed(0)
    init = CifarCNN().state_dict()

    def fresh():
        model = CifarCNN().to(device)
        model.load_state_dict(init)
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    hand_loop(*fresh(), batches[:3], device)  # warm-up: allocator, kernels
    times: dict[str, list[float]] = {"hand loop": [], "trainer": []}
    for i in range(args.rounds):  # order alternates too (ABBA), cancelling order effects
        order = ("hand loop", "trainer") if i % 2 == 0 else ("trainer", "hand loop")
        for name in order:
            loop = hand_loop if name == "hand loop" else trainer_loop
            times[name].append(loop(*fresh(), batches, device))
    ratios = sorted(t / h for t, h in zip(times["trainer"], times["hand loop"], strict=True))
    overhead = statistics.median(ratios) - 1
    best = {k: min(v) for k, v in times.items()}
    samples = args.steps * args.batch_size
    print(
        f"CIFAR-10 CNN, {args.rounds} alternating rounds of {args.steps} steps of "
        f"{args.batch_size} on {device}"
    )
    print(f"{'loop':<10} | {'best s':>7} | {'median s':>8} | {'samples/sec (best)':>18}")
    for k, t in best.items():
        print(f"{k:<10} | {t:7.3f} | {statistics.median(times[k]):8.3f} | {samples / t:18.1f}")
    print("paired ratios trainer/hand: " + ", ".join(f"{r:.3f}" for r in ratios))
    print(f"trainer overhead (median paired ratio - 1): {100 * overhead:+.2f}% (target < 5%)")
    # The same comparison on a model too small to do any work: the difference is the trainer's own
    # per-step cost, which noise cannot hide; divided by the CNN's step time it bounds the overhead.
    tiny = [(torch.randn(2, 4, generator=g), torch.randint(0, 2, (2,), generator=g))] * 200
    tiny_times: dict[str, list[float]] = {"hand loop": [], "trainer": []}
    for _ in range(5):
        for name, loop in (("hand loop", hand_loop), ("trainer", trainer_loop)):
            torch.manual_seed(0)
            model = torch.nn.Linear(4, 2).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            tiny_times[name].append(loop(model, opt, tiny, device))
    extra = (min(tiny_times["trainer"]) - min(tiny_times["hand loop"])) / len(tiny)
    step = best["hand loop"] / args.steps
    print(
        f"trainer bookkeeping per step (tiny model): {1e6 * extra:.0f} µs "
        f"= {100 * extra / step:.3f}% of a {1e3 * step:.0f} ms CNN step"
    )
    figures = {
        "trainer_overhead": round(overhead, 4),
        "bookkeeping_us_per_step": round(1e6 * extra, 1),
        "bookkeeping_fraction_of_step": round(extra / step, 5),
        "overhead_quartiles": [round(q - 1, 4) for q in statistics.quantiles(ratios, n=4)],
        "hand_loop_seconds_best": round(best["hand loop"], 4),
        "trainer_seconds_best": round(best["trainer"], 4),
        "samples_per_sec_trainer": round(samples / best["trainer"], 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
