"""Layer-2 primitives vs PyTorch CPU: forward + backward time of conv, LSTM and attention.

Both sides run in this one process on the same float32 inputs, alternating repeat by repeat so
that a noisy (shared) CPU slows them alike; the figure is the median over repeats. Both use the
same number of threads (`--threads`, default 1: numpy's BLAS via threadpoolctl, torch via
set_num_threads; 1 is what the layer-2 deliverables use, see layer2_primitives/deliverables/).

    python benchmarks/primitives.py [--repeats 7] [--threads 1]

Prints a table, then as the LAST line one JSON object of ratios ours / torch (lower is better):
{"conv2d_vs_torch": ..., "lstm_vs_torch": ..., "attention_vs_torch": ...}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from layer1_autograd import Tensor
from layer2_primitives import LSTM, conv2d, scaled_dot_product_attention


def conv_case(rng: np.random.Generator) -> tuple[Callable[[], None], Callable[[], None], str]:
    x = rng.normal(size=(64, 32, 32, 32)).astype(np.float32)
    w = (rng.normal(size=(64, 32, 3, 3)) * 0.05).astype(np.float32)
    g = rng.normal(size=(64, 64, 32, 32)).astype(np.float32)
    X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    tx, tw, tg = (
        torch.tensor(x, requires_grad=True),
        torch.tensor(w, requires_grad=True),
        torch.tensor(g),
    )

    def ours() -> None:
        X.grad = W.grad = None
        conv2d(X, W, None, 1, 1).backward(g)

    def theirs() -> None:
        tx.grad = tw.grad = None
        torch.nn.functional.conv2d(tx, tw, None, 1, 1).backward(tg)

    return ours, theirs, "conv2d  N=64 32->64 ch 32x32 3x3 pad 1"


def lstm_case(rng: np.random.Generator) -> tuple[Callable[[], None], Callable[[], None], str]:
    ours_lstm = LSTM(256, 256, rng=rng)
    ref = torch.nn.LSTM(256, 256, batch_first=True)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.tensor(dict(ours_lstm.named_parameters())[name].data))
    x = rng.normal(size=(32, 64, 256)).astype(np.float32)
    g = rng.normal(size=(32, 64, 256)).astype(np.float32)
    X, tx, tg = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True), torch.tensor(g)

    def ours() -> None:
        ours_lstm.zero_grad()
        X.grad = None
        ours_lstm(X)[0].backward(g)

    def theirs() -> None:
        ref.zero_grad()
        tx.grad = None
        ref(tx)[0].backward(tg)

    return ours, theirs, "LSTM    B=32 T=64 D=256 H=256"


def attention_case(rng: np.random.Generator) -> tuple[Callable[[], None], Callable[[], None], str]:
    q, k, v, g = (rng.normal(size=(8, 4, 128, 64)).astype(np.float32) for _ in range(4))
    Q, K, V = (Tensor(a, requires_grad=True) for a in (q, k, v))
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tg = torch.tensor(g)

    def ours() -> None:
        Q.grad = K.grad = V.grad = None
        scaled_dot_product_attention(Q, K, V, is_causal=True).backward(g)

    def theirs() -> None:
        tq.grad = tk.grad = tv.grad = None
        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True).backward(tg)

    return ours, theirs, "attention B=8 h=4 T=128 d=64 causal"


def time_pair(
    ours: Callable[[], None], theirs: Callable[[], None], repeats: int
) -> tuple[float, float]:
    """Median seconds of each, alternating calls; two warm-up calls each first."""
    for _ in range(2):
        ours()
        theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        t1 = time.perf_counter()
        theirs()
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_theirs.append(t2 - t1)
    return float(np.median(t_ours)), float(np.median(t_theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads, both sides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        run(args.repeats)


def run(repeats: int) -> None:
    rng = np.random.default_rng(0)
    figures = {}
    print(
        f"torch {torch.__version__} and numpy {np.__version__}, {torch.get_num_threads()} thread(s)"
    )
    print(
        f"{'case (forward + backward, float32)':42s} {'ours ms':>9s} {'torch ms':>9s} {'ratio':>7s}"
    )
    for key, case in (("conv2d", conv_case), ("lstm", lstm_case), ("attention", attention_case)):
        ours, theirs, label = case(rng)
        a, b = time_pair(ours, theirs, repeats)
        figures[f"{key}_vs_torch"] = round(a / b, 3)
        print(f"{label:42s} {a * 1e3:9.1f} {b * 1e3:9.1f} {a / b:7.2f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
