"""ZeRO-1 under ``torchrun --nproc_per_node=2``: the parameters after every AdamW step equal
DDP's, each rank's optimiser state is its shard's (8 bytes per parameter in fp32 Adam, the
paper's K·Ψ/N), and the paper's per-stage memory formula against hand-computed values."""

import math

import pytest

from layer5_training.distributed.zero import bytes_per_rank
from tests.layer5.test_distributed import parity_job, parity_problem


@pytest.mark.slow
def test_zero1_equals_ddp_and_shards_the_optimizer_state():
    traces, results, _ = parity_job()  # the one 2-rank job of the parity tests
    diff = (traces["zero1/params"] - traces["ddp/params"]).abs().max()
    assert diff <= 1e-6
    assert (traces["zero1/params"][-1] - traces["zero1/params"][0]).abs().max() > 1e-3  # it trains
    psi = sum(p.numel() for p in parity_problem().build_model().parameters())
    assert psi % 2 == 1  # odd: the two shards differ in length
    infos = [r["parts"]["zero1"] for r in results]
    assert [i["numel"] for i in infos] == [psi, psi]
    shard = math.ceil(psi / 2)
    step_bytes = 4  # Adam's float32 ``step`` counter per state entry
    expected = [8 * shard + step_bytes, 8 * (psi - shard) + step_bytes]
    assert [i["state_bytes"] for i in infos] == expected
    # the whole state, summed over ranks, is one replica's (DDP keeps it all on every rank)
    assert sum(expected) - 2 * step_bytes == 8 * psi


def test_zero_stage_formula_matches_the_paper():
    # ZeRO paper, Fig. 1 (Ψ = 7.5B, N = 64, K = 12): 120 GB, 31.4 GB, 16.6 GB, 1.9 GB
    psi, n = 7.5e9, 64
    gb = [bytes_per_rank(psi, n, s) / 1e9 for s in ("ddp", "zero1", "zero2", "zero3")]
    assert gb == pytest.approx([120.0, 31.4, 16.6, 1.9], abs=0.05)
    assert bytes_per_rank(100, 1, "zero3") == bytes_per_rank(100, 1, "ddp") == 1600
    assert bytes_per_rank(100, 4, "zero1", k=8) == 400 + 8 * 100 / 4
    with pytest.raises(ValueError, match="unknown stage 'zero4'"):
        bytes_per_rank(1, 2, "zero4")
    with pytest.raises(ValueError, match="n must be >= 1"):
        bytes_per_rank(1, 0, "zero1")
