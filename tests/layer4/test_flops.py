"""FLOPs per token against torch's FlopCounterMode, MFU arithmetic, the peak lookup."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from layer4_architectures.sequence.flops import (
    flops_per_token,
    gpt_flops_per_token,
    measure_matmul_peak,
    mfu,
    peak_flops,
)
from layer4_architectures.sequence.gpt import GPT


def counted_training_flops(model: GPT, batch: int, t: int) -> int:
    """The matmul FLOPs torch counts for one forward + backward on (batch, t) tokens.

    Attention runs on the explicit path (``need_weights``): Q Kᵀ and A V are plain matmuls the
    counter sees (it does not count the CPU SDPA kernel, and would count a FlashAttention-style
    backward's recomputation of Q Kᵀ, which is not model work)."""
    for block in model.blocks:
        block.attn.need_weights = True
    idx = torch.randint(0, model.config.vocab_size, (batch, t))
    with FlopCounterMode(display=False) as counter:
        loss = F.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
        loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize(
    ("mlp", "tie", "pos"), [("swiglu", True, "rope"), ("gelu", False, "learned")]
)
def test_6n_plus_12ltd_is_what_the_flop_counter_counts(mlp, tie, pos):
    """The counter counts 2mnk per (m×k)(k×n) matmul, forward and backward, and nothing else.
    With N' = the matmul parameters (N less the norm gains, which are not in any matmul) it
    must equal 6·N'·BT + 12·L·T·d·BT exactly; the formula's N keeps the gains, so the two
    differ by 6·(norm gains)/(6N + 12LTd), under 1% here."""
    torch.manual_seed(0)
    cfg = {"block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}
    model = GPT(64, mlp=mlp, tie_weights=tie, pos=pos, **cfg)
    b, t = 2, 32
    counted = counted_training_flops(model, b, t)
    norm_gains = (2 * 2 + 1) * 32
    n_matmul = model.num_params(non_embedding=True) - norm_gains
    assert counted == (6 * n_matmul + 12 * 2 * t * 32) * b * t
    formula = gpt_flops_per_token(model, t) * b * t
    assert abs(formula / counted - 1) < 0.01
    assert formula == flops_per_token(model.num_params(True), 2, t, 32) * b * t


def test_mfu_and_the_peak():
    assert mfu(1000.0, 6e6, 1.2e10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="peak_flops must be positive, got 0"):
        mfu(1.0, 1.0, 0)
    with pytest.raises(ValueError, match="seq_len must be >= 0, got -1"):
        flops_per_token(10, 1, -1, 4)
    measured = measure_matmul_peak("cpu", size=256, repeats=3)
    assert 1e8 < measured < 1e14  # 0.1 GFLOP/s … 100 TFLOP/s: a CPU, timed
    value, source = peak_flops("cpu")
    assert value > 1e8 and "measured" in source
