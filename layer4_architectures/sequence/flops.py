"""Parameters, FLOPs per token and model FLOPs utilisation (MFU) of a GPT.

Kaplan et al. 2020 §2.1 and PaLM (Chowdhery et al. 2022, appendix B). A forward pass through
a weight matrix of N entries costs 2N FLOPs per token (a multiply and an add per entry); the
backward pass costs twice that (the gradient with respect to the input and to the weight), so
training costs 6N per token. Attention adds the two matmuls that have no weights,
Q Kᵀ and A V: 2·T·d FLOPs each per token and layer in the forward pass (T the context length,
d = n_embd summed over heads), 12·L·T·d forward + backward. Hence

    FLOPs per token (training) ≈ 6·N + 12·L·T·d

where N counts the parameters that take part in matmuls: everything except the lookup tables
(position embeddings; token embeddings unless tied to the output layer, which is then a
matmul: :meth:`~.gpt.GPT.num_params` with ``non_embedding=True``). Not counted: norms,
softmax, activations, the optimizer (O(N) each, small); the causal mask is not discounted
(PaLM's convention: the full T×T matrix). FlashAttention-style kernels recompute Q Kᵀ in the
backward pass; that is hardware work, not model work, and MFU leaves it out.

    MFU = (tokens/s · FLOPs per token) / peak FLOP/s

On CPU the peak is measured in the same run (a large float32 matmul, the best this machine
does on the operation that dominates a Transformer); on a GPU it is the datasheet dense bf16
tensor-core peak.
"""

from __future__ import annotations

import time

import torch

# dense (no sparsity) bf16 tensor-core peaks from the datasheets, FLOP/s; first match wins
DATASHEET_BF16_PEAK = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
)


def flops_per_token(n_params: int, n_layer: int, seq_len: int, d_model: int) -> float:
    """Training FLOPs per token, forward + backward: 6·N + 12·L·T·d."""
    for name, value in (("n_params", n_params), ("n_layer", n_layer), ("seq_len", seq_len),
                        ("d_model", d_model)):  # fmt: skip
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    return 6.0 * n_params + 12.0 * n_layer * seq_len * d_model


def gpt_flops_per_token(model, seq_len: int | None = None) -> float:
    """6·N + 12·L·T·d for a :class:`~.gpt.GPT`, T = seq_len (default its block_size)."""
    cfg = model.config
    t = cfg.block_size if seq_len is None else seq_len
    return flops_per_token(model.num_params(non_embedding=True), cfg.n_layer, t, cfg.n_embd)


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak, a fraction in [0, 1]."""
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return tokens_per_s * flops_per_token / peak_flops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(
    device: torch.device | str = "cpu",
    size: int = 1024,
    repeats: int = 10,
    dtype: torch.dtype = torch.float32,
) -> float:
    """The best FLOP/s of a (size × size) @ (size × size) matmul over ``repeats`` timed runs."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up: allocation, kernel selection
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def peak_flops(device: torch.device | str = "cpu") -> tuple[float, str]:
    """(peak FLOP/s, where it comes from): a datasheet bf16 figure for known GPUs, else measured."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in DATASHEET_BF16_PEAK:
            if key in name:
                return value, f"datasheet dense bf16 peak of {name}"
        measured = measure_matmul_peak(device, size=8192, dtype=torch.bfloat16)
        return measured, f"measured bf16 8192² matmul on {name} (no datasheet entry)"
    return measure_matmul_peak(device), "measured float32 1024² matmul on this CPU, same run"
