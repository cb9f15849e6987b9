"""Parity: an exported graph must compute what eager PyTorch computes, to float32 round-off.

For every model, format and graph, :func:`graph_diff` runs the eager wrapper and the exported
file on the same inputs and reports max |a − b| over all outputs: on random inputs (every
part of the input range, shapes other than the export's example) and on real ones (CIFAR-10
test images, noised MNIST digits, TinyStories prompts). The target is ≤ 1e-4 in fp32: the
exported graph reorders and fuses floating-point operations, so exact equality is not
expected, but any real difference (a missing normalisation, a position off by one, a frozen
shape) is orders of magnitude larger.

For the GPT two more checks tie the cache to the model: :func:`cached_vs_full` prefills a prefix
and steps through the rest one token at a time, comparing each step's logits with layer 4's
full forward over the same ids (so RoPE at the right offset and the appended keys are
checked), and :func:`greedy_tokens` generates greedily through the graphs, to be compared with
``GPT.generate(temperature=0)`` token for token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from layer6_serving.runtime import Graph, GraphDecoder

TOLERANCE = 1e-4


class ParityError(AssertionError):
    """An exported graph disagrees with eager PyTorch beyond the tolerance."""


def max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """max |a_i − b_i| over every output (shapes must agree)."""
    if len(a) != len(b):
        raise ParityError(f"{len(a)} outputs vs {len(b)}")
    worst = 0.0
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.shape != y.shape:
            raise ParityError(f"output {i}: shape {x.shape} vs {y.shape}")
        worst = max(worst, float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()))
    return worst


def graph_diff(reference: Graph, candidate: Graph, inputs: Sequence[np.ndarray]) -> float:
    """max |reference(inputs) − candidate(inputs)|."""
    return max_abs_diff(reference(*inputs), candidate(*inputs))


def cached_vs_full(gpt: nn.Module, decoder: GraphDecoder, ids: np.ndarray, prefix: int) -> float:
    """Prefill ``ids[:, :prefix]``, step through the rest; max |logits − GPT(ids)[:, t]|."""
    with torch.inference_mode():
        full = gpt(torch.from_numpy(ids)).numpy()  # (B, T, V)
    logits, state = decoder.prefill(ids[:, :prefix])
    worst = float(np.abs(logits - full[:, prefix - 1]).max())
    for t in range(prefix, ids.shape[1]):
        logits, state = decoder.step(ids[:, t], state)
        worst = max(worst, float(np.abs(logits - full[:, t]).max()))
    return worst


def greedy_tokens(decoder: GraphDecoder, ids: np.ndarray, n: int) -> np.ndarray:
    """ids (B, T0) continued by ``n`` argmax tokens through the cache -> (B, T0 + n)."""
    out = [ids]
    logits, state = decoder.prefill(ids)
    for i in range(n):
        nxt = logits.argmax(-1).astype(np.int64)  # (B,)
        out.append(nxt[:, None])
        if i < n - 1:
            logits, state = decoder.step(nxt, state)
    return np.concatenate(out, axis=1)


def reference_greedy(gpt: nn.Module, ids: np.ndarray, n: int) -> np.ndarray:
    """Layer 4's ``GPT.generate`` with temperature 0 (its own KV cache) -> (B, T0 + n)."""
    return gpt.generate(torch.from_numpy(ids), n, temperature=0.0).numpy()
