"""The ``distributed`` deliverable on a tiny config (real MNIST, two torchrun jobs): the headline
metrics hold what they must (parity within 1e-6, ZeRO-1 state ≈ 8Ψ/N, speed-ups positive and the
model's N = 2 prediction its own curve's), and the plots and table are written."""

import json

import pytest

from layer0_math.lab import latest_run_dir, run_deliverable
from layer5_training.deliverables.distributed import distributed

TINY = {
    "hidden": [16],
    "steps": 3,
    "global_batch": 8,
    "micro_batches": 2,
    "timing_steps": 4,
    "timing_warmup": 1,
    "timing_batch": 16,
    "sizes": [4096, 4194304],  # a wide span: the fitted bandwidth is the slope
    "reps": 3,
    "max_n": 8,
    "timeout_s": 120,
}


@pytest.mark.slow
@pytest.mark.data
def test_distributed_deliverable_tiny(tmp_path):
    m = run_deliverable(distributed, overrides=TINY, runs_dir=tmp_path)
    for key in ("ddp_max_grad_diff", "fsdp_max_grad_diff", "zero1_max_param_diff"):
        assert 0.0 <= m[key] <= 1e-6, key
    assert m["accum_max_grad_diff"] <= 1e-6 and m["trainer_accum_max_param_diff"] <= 1e-6
    psi = 784 * 16 + 16 + 16 * 10 + 10
    assert m["params"] == psi and m["world_size"] == 2
    assert sum(m["zero1_state_bytes_per_rank"]) == 8 * psi + 2 * 4  # + two Adam step counters
    assert m["zero1_state_bytes_vs_formula"] == pytest.approx(1.0, abs=1e-3)
    assert m["speedup_predicted_n2"] == m["speedup_predicted"][1]
    assert 0 < m["speedup_predicted"][1] <= 2 and m["speedup_measured_n2"] > 0
    overlap, plain = m["speedup_predicted_overlap"], m["speedup_predicted"]
    assert all(o >= p for o, p in zip(overlap, plain, strict=True))
    assert m["compute_contention"] > 0 and m["speedup_predicted_n2_with_contention"] > 0
    assert m["grad_bytes"] == 4 * psi and m["grad_bytes"] in m["allreduce_sizes"]
    run = latest_run_dir("layer5_training", "distributed", tmp_path)
    assert json.loads((run / "metrics.json").read_text())["params"] == psi
    for name in ("parity.png", "allreduce_bandwidth.png", "speedup.png", "zero_memory.png"):
        assert (run / name).stat().st_size > 10_000, name
    assert "zero1_state_bytes_vs_formula" in (run / "table.md").read_text()
