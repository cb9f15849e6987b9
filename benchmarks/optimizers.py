"""Optimiser step time: layer 5's written-out optimisers against torch.optim, per optimiser.

The model is ~1M parameters in four tensors shaped like a 512 → 1024 → 512 MLP (two weight
matrices, two biases), float32, with fixed random gradients; only ``optimizer.step()`` is timed
(median of ``--steps`` after ``--warmup``, ours and torch's stepped in turn), so the figure is
the update's own cost. torch runs twice: ``foreach=False`` (a per-tensor loop, the same
structure as ours) and its default (on CPU also the per-tensor loop; on CUDA the multi-tensor
``foreach`` kernels). Lion has no torch class: its ratios are null.

Run under the CPU lock on the shared machine:
``flock /tmp/dlstack-cpu.lock .venv/bin/python benchmarks/optimizers.py``. The last line is one
JSON object: per optimiser the milliseconds per step of ``ours``, ``torch_loop``,
``torch_default`` and the ratios ``ours / torch``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from layer5_training.optim.registry import OPTIMIZERS

SHAPES = [(1024, 512), (1024,), (512, 1024), (512,)]
Builder = Callable[[list[torch.Tensor]], torch.optim.Optimizer]
HYPER = {"sgd": {"momentum": 0.9, "nesterov": True}, "rmsprop": {"momentum": 0.9}}
TORCH = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adafactor": torch.optim.Adafactor,
}


def _params(device: torch.device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    params = []
    for shape in SHAPES:
        p = torch.randn(shape, generator=g).to(device).requires_grad_()
        p.grad = 1e-3 * torch.randn(shape, generator=g).to(device)
        params.append(p)
    return params


def time_interleaved(builds: dict[str, Builder], device, steps: int, warmup: int) -> dict:
    """Median milliseconds of one ``step()`` per optimiser, the optimisers stepped in turn.

    Interleaving puts ours and torch's under the same background load at each moment, so the
    ratio stays honest on a shared machine even when the absolute times drift.
    """
    opts = {k: build(_params(device)) for k, build in builds.items()}
    times: dict[str, list[float]] = {k: [] for k in opts}
    for i in range(steps + warmup):
        for k, opt in opts.items():
            _sync(device)
            start = time.perf_counter()
            opt.step()
            _sync(device)
            if i >= warmup:
                times[k].append(1e3 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, device: torch.device, steps: int, warmup: int) -> dict[str, float | None]:
    hyper = {"lr": 1e-3, **HYPER.get(name, {})}
    builds: dict[str, Builder] = {"ours_ms": lambda p: OPTIMIZERS[name](p, **hyper)}
    theirs = TORCH.get(name)
    if theirs is not None:
        builds["torch_loop_ms"] = lambda p: theirs(p, foreach=False, **hyper)
        builds["torch_default_ms"] = lambda p: theirs(p, **hyper)
    row: dict[str, float | None] = {
        "torch_loop_ms": None, "torch_default_ms": None, "ratio_loop": None, "ratio_default": None,
        **time_interleaved(builds, device, steps, warmup),
    }  # fmt: skip
    if theirs is not None:
        row["ratio_loop"] = row["ours_ms"] / row["torch_loop_ms"]
        row["ratio_default"] = row["ours_ms"] / row["torch_default_ms"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    results = {name: bench(name, device, args.steps, args.warmup) for name in OPTIMIZERS}

    print(f"{'optimizer':<10} {'ours ms':>8} {'torch loop':>10} {'torch dflt':>10} {'ratio':>6}")
    for name, r in results.items():
        cells = [
            f"{r[k]:.3f}" if r[k] is not None else "-"
            for k in ("ours_ms", "torch_loop_ms", "torch_default_ms", "ratio_loop")
        ]
        print(f"{name:<10} {cells[0]:>8} {cells[1]:>10} {cells[2]:>10} {cells[3]:>6}")
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "params": sum(torch.Size(s).numel() for s in SHAPES),
        "steps": args.steps,
        "optimizers": {
            n: {k: (round(v, 4) if v is not None else None) for k, v in r.items()}
            for n, r in results.items()
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
