"""Autograd speed: one SGD step of a 784-256-256-10 ReLU MLP (batch 128, float32) in the layer-1
tensor engine and in PyTorch eager on CPU, in one process; and the scalar engine's throughput.

Prints a table, then as its last line one JSON object:
``mlp_step_vs_torch`` (our median step time / torch's) and ``value_nodes_per_sec`` (graph nodes
built and differentiated per second by the scalar engine on a ValueMLP forward+backward).

Both engines run with the same number of BLAS/OpenMP threads (``--threads``, default 1: on a
small shared machine two spinning thread pools, OpenBLAS's and torch's, disturb each other and
make multi-threaded timings meaningless). Steps run in interleaved blocks (torch, ours, torch,
ours, ...) so that a change in background load hits both engines alike.
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> str:
    """The --threads value, needed before numpy/torch load their thread pools."""
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv()

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from layer1_autograd import MLP, SGD, F, Tensor, Value  # noqa: E402
from layer1_autograd.value_nn import ValueMLP  # noqa: E402

SIZES = (784, 256, 256, 10)
BATCH = 128


def median_seconds(step: Callable[[], None], repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(
    steps: dict[str, Callable[[], None]], rounds: int, block: int = 10
) -> dict[str, float]:
    """Median seconds per step of each function, timed in alternating blocks."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(3):  # re-warm caches after the other engine ran
                step()
            for _ in range(block):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def ours_step_fn(x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    model = MLP(SIZES, rng=np.random.default_rng(0), dtype=np.float32)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    xt = Tensor(x)

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(xt), y).backward()
        opt.step()

    return step


def torch_step_fn(x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()

    return step


def value_nodes_per_sec(repeats: int) -> tuple[float, int]:
    """Nodes per second for forward+backward of a 2-16-16-1 ValueMLP on 8 points."""
    rng = np.random.default_rng(0)
    model = ValueMLP([2, 16, 16, 1], rng=rng)
    points = rng.normal(size=(8, 2)).tolist()
    n_nodes = 0

    def step() -> None:
        nonlocal n_nodes
        model.zero_grad()
        loss = sum((model(p)[0] for p in points), Value(0.0))
        loss.backward()
        n_nodes = len(loss.topological_order())

    seconds = median_seconds(step, repeats, warmup=2)
    return n_nodes / seconds, n_nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="blocks of 10 steps per engine")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)

    medians = interleaved_medians(
        {"torch": torch_step_fn(x, y), "ours": ours_step_fn(x, y)}, args.rounds
    )
    ours, ref = medians["ours"], medians["torch"]
    nps, n_nodes = value_nodes_per_sec(repeats=5)

    print(
        f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float32, SGD step "
        f"(median of {args.rounds * 10}; {args.threads} thread(s) each)"
    )
    print(f"{'engine':<24}{'ms/step':>10}{'vs torch':>10}")
    print(f"{'layer1 Tensor':<24}{ours * 1e3:>10.3f}{ours / ref:>10.2f}")
    print(f"{'PyTorch eager':<24}{ref * 1e3:>10.3f}{1.0:>10.2f}")
    print(f"scalar Value engine: {nps:,.0f} nodes/s (graph of {n_nodes} nodes, forward+backward)")
    print(
        json.dumps(
            {
                "mlp_step_vs_torch": round(ours / ref, 3),
                "mlp_step_ms": round(ours * 1e3, 3),
                "torch_step_ms": round(ref * 1e3, 3),
                "value_nodes_per_sec": round(nps),
                "threads": args.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
