"""Data parallelism under ``torchrun --nproc_per_node=2`` (gloo, CPU) against one process.

DDP and FSDP2 gradients at every step of a short AdamW run equal the one-process run's on the
same global batch (≤ 1e-6), as do the losses; gradient accumulation equals the big batch (by hand
and through layer 3's Trainer); a rank that raises mid-run makes the job fail fast with that
rank's message; a world size that does not divide the batch is refused; layer 3's pipeline under
torchrun trains the one-process weights, and a run stopped at step k and resumed under torchrun
ends on the uninterrupted run's weights.
"""

import functools
import tempfile
import time
from pathlib import Path

import pytest
import torch

import layer3_framework.data as data_module
from layer3_framework.train import compose, run
from layer5_training.distributed.accumulation import (
    accumulated_gradient,
    batch_gradient,
    trainer_params,
)
from layer5_training.distributed.launch import DistributedError, launch, read_tensors
from layer5_training.distributed.reference import Problem, check_divides, trajectory

WORKER = "layer5_training.distributed.worker"
TOL = 1e-6
PIPELINE = [
    "model=mlp",
    "model.hidden=[32]",
    "data=mnist",
    "data.source=synthetic",
    "data.n_train=128",
    "data.n_test=32",
    "data.batch_size=16",
    "optim=adamw",
    "optim.total_steps=10",
    "logger=jsonl",
    "trainer.log_every=2",
    "trainer.progress=false",
    "device=cpu",
]


def _problem(steps: int = 4, batch: int = 16) -> Problem:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 20, generator=g), torch.randint(0, 5, (64,), generator=g)
    return Problem(x, y, 5, [32], steps=steps, global_batch=batch, lr=1e-2)


def _pipeline_runs(root: Path) -> list[dict]:
    """Layer 3 pipeline runs under torchrun: 10 steps; 4 steps; those 4 resumed to 10."""
    full, part = root / "full", root / "part"
    return [
        {"overrides": [*PIPELINE, "trainer.max_steps=10"], "run_dir": str(full)},
        {"overrides": [*PIPELINE, "trainer.max_steps=4"], "run_dir": str(part)},
        {
            "overrides": [*PIPELINE, "trainer.max_steps=10", f"resume={part}"],
            "run_dir": str(root / "resumed"),
        },
    ]


@functools.cache
def parity_job() -> tuple[dict, list[dict], Path]:
    """ONE 2-rank torchrun job for every parity test (a launch costs ~7 s of CPU in imports):
    DDP, FSDP2 and ZeRO-1 on :func:`parity_problem`, then the pipeline runs; rank 0's tensors,
    every rank's result, the job folder. Also used by ``test_zero.py``."""
    out = Path(tempfile.mkdtemp(prefix="dlstack-parity-"))
    parity_problem().save(out / "problem.pt")
    parts = [{"name": "ddp"}, {"name": "fsdp"}, {"name": "zero1"}]
    parts.append({"name": "pipeline", "runs": _pipeline_runs(out)})
    results = launch(WORKER, {"problem": str(out / "problem.pt"), "parts": parts}, out, nproc=2)
    return read_tensors(out), results, out


def parity_problem() -> Problem:
    return _problem()


@pytest.fixture(scope="module")
def parallel():
    """The parity job and the one-process reference."""
    traces, results, _ = parity_job()
    problem = _problem()
    model = problem.build_model()
    reference = trajectory(model, problem.make_optimizer(list(model.parameters())), problem)
    return traces, reference, results


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_parallel_gradients_equal_one_process_at_every_step(parallel, kind):
    traces, reference, results = parallel
    assert [r["world"] for r in results] == [2, 2]
    assert reference["grads"].shape[0] == 4
    grads = traces[f"{kind}/grads"]
    assert grads.shape == reference["grads"].shape == (4, sum(reference["params"][0].shape))
    assert (grads - reference["grads"]).abs().max() <= TOL
    assert (traces[f"{kind}/loss"] - reference["loss"]).abs().max() <= TOL
    assert (traces[f"{kind}/params"] - reference["params"]).abs().max() <= TOL
    # and the check can fail: the gradient of one rank's half-batch is not the global one
    problem = _problem()
    half = batch_gradient(problem.build_model(), *problem.shard(0, 0, 2))
    assert (half - reference["grads"][0]).abs().max() > 1e-3


def test_accumulated_micro_batches_equal_the_big_batch():
    problem = _problem()
    model = problem.build_model()
    x, y = problem.shard(0)
    full = batch_gradient(model, x, y)
    assert (accumulated_gradient(model, x, y, 4) - full).abs().max() <= TOL
    with pytest.raises(ValueError, match="cannot be split into 3 equal"):
        accumulated_gradient(model, x, y, 3)


def test_trainer_grad_accum_equals_the_big_batch():
    problem = _problem(steps=3)
    big = trainer_params(problem, batch_size=16, grad_accum=1)
    accumulated = trainer_params(problem, batch_size=4, grad_accum=4)
    assert (accumulated - big).abs().max() <= TOL
    small = trainer_params(problem, batch_size=4, grad_accum=1)  # 4x the steps' noise: differs
    assert (small - big).abs().max() > 1e-3


def test_a_rank_failing_mid_run_fails_the_job_fast_with_its_message(tmp_path):
    problem = _problem(steps=6)
    problem.save(tmp_path / "problem.pt")
    spec = {
        "problem": str(tmp_path / "problem.pt"),
        "timeout_s": 20,
        "parts": [{"name": "ddp", "record": False, "fail_rank": 1, "fail_step": 2}],
    }
    start = time.perf_counter()
    with pytest.raises(DistributedError, match="rank 1: RuntimeError: rank 1 failed on purpose"):
        launch(WORKER, spec, tmp_path, nproc=2, timeout_s=90)
    assert time.perf_counter() - start < 90  # stopped by torchrun / the group timeout, no hang


def test_a_world_size_that_does_not_divide_the_batch_is_refused(monkeypatch):
    check_divides(16, 2)
    with pytest.raises(ValueError, match="global batch of 15 samples is not divisible by the"):
        check_divides(15, 2)
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        _problem(batch=16).shard(0, 0, 3)
    data = compose(["data=mnist", "data.source=synthetic", "data.batch_size=10"]).data
    module = data_module.ImageData(**{k: v for k, v in data.items() if k != "_target_"})
    module.setup(0)
    monkeypatch.setattr(data_module, "rank_and_world", lambda: (0, 3))
    with pytest.raises(ValueError, match="data.batch_size=10 is not divisible by the world size 3"):
        module.train_loader(0)


def test_launch_rejects_a_bad_process_count(tmp_path):
    with pytest.raises(ValueError, match="nproc must be >= 1"):
        launch(WORKER, {"parts": []}, tmp_path, nproc=0)


@pytest.mark.slow
def test_the_layer3_pipeline_under_torchrun_equals_one_process_and_resumes_exactly(tmp_path):
    params, results, root = parity_job()
    assert all(info["replica_max_diff"] == 0.0 for info in results[0]["parts"]["pipeline"])
    assert (params["pipeline/2"] - params["pipeline/0"]).abs().max() == 0.0  # exact resume
    assert (params["pipeline/1"] - params["pipeline/0"]).abs().max() > 1e-4  # 4 steps != 10
    # rank 0 alone wrote the run record and checkpoints
    assert (root / "full" / "manifest.json").exists()
    assert list((root / "full" / "checkpoints").glob("*"))
    kept = {}

    def keep(trainer):
        if trainer.step == trainer.cfg.max_steps:
            kept["params"] = torch.cat([p.detach().reshape(-1) for p in trainer.task.parameters()])

    single = run(compose([*PIPELINE, "trainer.max_steps=10"]), tmp_path / "one", hooks=[keep])
    assert (kept["params"].double() - params["pipeline/0"]).abs().max() <= TOL
    ranked = results[0]["parts"]["pipeline"][0]["metrics"]
    assert abs(ranked["train_loss"] - single["train_loss"]) <= TOL
