"""GPT speed: generation with and without the KV cache, training tokens/s and MFU, in one run.

Generation: ``--new-tokens`` (200) tokens, greedy, from a one-token prompt, batch 1, with the KV
cache (prefill, then one token per step) and without it (each step re-runs the whole prefix);
both must give the same tokens. Training: forward + backward + AdamW step on random token
windows of ``--batch`` × ``--seq-len``; tokens/s, FLOPs/token = 6N + 12·L·T·d
(``layer4_architectures.sequence.flops``) and MFU against the peak: on CPU a float32 matmul
peak measured in this run, on CUDA the datasheet bf16 peak (training then runs under bf16
autocast).

Presets: ``small`` is the nanoGPT shakespeare-char model (4 layers, 4 heads, 128 dim, vocab 65,
block 256 for generation, training at T = 64, batch 12); ``cs336`` the TinyStories one
(4 layers, 16 heads, d 512, d_ff 1344, vocab 10k, T = 256, batch 32), for a GPU.

Run under the CPU lock on the shared machine:
``flock /tmp/dlstack-cpu.lock .venv/bin/python benchmarks/gpt.py``. The last line is one JSON
object with ``kv_cache_speedup`` (uncached seconds / cached seconds), the tokens/s figures and
``mfu``.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import torch

from layer4_architectures.sequence.flops import gpt_flops_per_token, mfu, peak_flops
from layer4_architectures.sequence.gpt import GPT, decay_groups

PRESETS = {
    "small": {
        "model": {"vocab_size": 65, "block_size": 256, "n_layer": 4, "n_head": 4, "n_embd": 128},
        "batch": 12,
        "seq_len": 64,
    },
    "cs336": {
        "model": {
            "vocab_size": 10000, "block_size": 256, "n_layer": 4, "n_head": 16, "n_embd": 512,
            "d_ff": 1344,
        },
        "batch": 32,
        "seq_len": 256,
    },
}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generation(model: GPT, new_tokens: int, use_cache: bool, repeats: int):
    """(best seconds, ids) of greedy generation from a one-token prompt."""
    device = model.lm_head.weight.device
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    model.generate(prompt, 8, temperature=0.0, use_cache=use_cache)  # warm-up
    best, ids = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        ids = model.generate(prompt, new_tokens, temperature=0.0, use_cache=use_cache)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, ids


def time_training(model: GPT, batch: int, seq_len: int, steps: int, warmup: int = 3) -> float:
    """Training tokens per second over ``steps`` timed AdamW steps (after ``warmup``)."""
    device = model.lm_head.weight.device
    opt = torch.optim.AdamW(decay_groups(model, 0.1), lr=1e-3)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )
    vocab = model.config.vocab_size
    data = torch.randint(0, vocab, (steps + warmup, batch, seq_len + 1), device=device)
    model.train()
    start = 0.0
    for i in range(steps + warmup):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        x, y = data[i, :, :-1], data[i, :, 1:]
        with autocast:
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * batch * seq_len / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    preset, device = PRESETS[args.preset], torch.device(args.device)

    torch.manual_seed(0)
    model = GPT(**preset["model"]).to(device)
    cached_s, cached_ids = time_generation(model, args.new_tokens, True, args.repeats)
    plain_s, plain_ids = time_generation(model, args.new_tokens, False, args.repeats)
    train_tps = time_training(model, preset["batch"], preset["seq_len"], args.train_steps)
    fpt = gpt_flops_per_token(model, preset["seq_len"])
    peak, peak_source = peak_flops(device)

    result = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "params": model.num_params(),
        "new_tokens": args.new_tokens,
        "kv_cache_seconds": round(cached_s, 4),
        "no_cache_seconds": round(plain_s, 4),
        "kv_cache_speedup": round(plain_s / cached_s, 2),
        "same_tokens": bool(torch.equal(cached_ids, plain_ids)),
        "gen_tokens_per_s_cache": round(args.new_tokens / cached_s, 1),
        "gen_tokens_per_s_no_cache": round(args.new_tokens / plain_s, 1),
        "train_tokens_per_s": round(train_tps, 1),
        "flops_per_token": fpt,
        "peak_flops": peak,
        "peak_source": peak_source,
        "mfu": round(mfu(train_tps, fpt, peak), 4),
    }
    print(f"{'metric':<28}value")
    for key, value in result.items():
        print(f"{key:<28}{value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
