"""``training_pipeline``: the CIFAR-10 CNN trained through the Hydra pipeline, then the two
reproducibility demonstrations on a short sub-run: the same seed twice gives identical metrics
(every logged record too), and a run stopped mid-epoch and resumed ends with the tensors of the
run that never stopped, bit for bit. Each sub-run is a run folder of its own inside this run's,
its manifest naming this run as its parent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from layer0_math.lab import RunContext, deliverable
from layer3_framework.checkpoint import read_checkpoint
from layer3_framework.loggers import read_jsonl
from layer3_framework.train import compose, run

CIFAR_TRAIN = 50_000


@deliverable(
    quick={
        "epochs": 3,
        "lr": 0.1,
        "batch_size": 128,
        "num_workers": 0,
        "demo_steps": 40,
        "demo_n_train": 2560,
        "data_source": "real",
    },
    full={"epochs": 30, "num_workers": 4, "demo_steps": 200, "demo_n_train": 12800},
    headline=["test_accuracy", "identical_rerun", "identical_resume"],
)
def training_pipeline(ctx: RunContext) -> dict[str, Any]:
    """CIFAR-10 CNN through the pipeline, plus the rerun and resume demonstrations."""
    cfg = ctx.config
    common = _common_overrides(ctx)
    n_train = CIFAR_TRAIN if cfg["data_source"] == "real" else cfg["demo_n_train"]
    if cfg["data_source"] != "real":
        common.append(f"data.n_train={n_train}")
    steps = cfg["epochs"] * (n_train // cfg["batch_size"])
    main = _sub_run(ctx, "main", [*common, f"trainer.max_steps={steps}", "trainer.eval_every=0"])
    rerun = _rerun(ctx, _demo_overrides(common, cfg))
    resume = _resume(ctx, _demo_overrides(common, cfg), Path(rerun["metrics_a"]["checkpoint"]))
    ctx.write_json("identical.json", {"rerun": _without_checkpoint(rerun), "resume": resume})
    return {
        "test_accuracy": main["test_accuracy"],
        "test_loss": main["test_loss"],
        "steps": main["step"],
        "train_seconds": main["train_seconds"],
        "samples_per_sec": main["samples_per_sec"],
        "identical_rerun": int(rerun["identical"]),
        "identical_resume": int(resume["identical"]),
        "resume_max_abs_diff": max(resume["max_abs_diff_per_tensor"].values()),
    }


def _common_overrides(ctx: RunContext) -> list[str]:
    cfg = ctx.config
    return [
        "experiment=cifar10_cnn",
        f"seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['batch_size']}",
        f"data.num_workers={cfg['num_workers']}",
        f"optim.lr={cfg['lr']}",
    ]


def _demo_overrides(common: list[str], cfg: dict[str, Any]) -> list[str]:
    """A short run on a subset (several epochs), checkpoints every quarter, JSONL logging only."""
    k = cfg["demo_steps"]
    return [
        *common,
        f"data.n_train={cfg['demo_n_train']}",
        "data.n_test=1000",
        f"optim.total_steps={k}",
        f"trainer.ckpt_every={k // 4}",
        "trainer.log_every=5",
        "logger=jsonl",
    ]


def _sub_run(ctx: RunContext, folder: str, overrides: list[str]) -> dict[str, Any]:
    return run(compose(overrides), ctx.out_dir / folder, device=ctx.device, parent_id=ctx.run_id)


def _timing_free(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.items()
        if "seconds" not in k and "per_sec" not in k and k != "checkpoint"
    }


def _rerun(ctx: RunContext, demo: list[str]) -> dict[str, Any]:
    """The same seed twice: final metrics and every logged record, timings aside, equal."""
    k = ctx.config["demo_steps"]
    a = _sub_run(ctx, "rerun_a", [*demo, f"trainer.max_steps={k}"])
    b = _sub_run(ctx, "rerun_b", [*demo, f"trainer.max_steps={k}"])
    logs = [
        [_timing_free(r) for r in read_jsonl(ctx.out_dir / d / "metrics.jsonl")]
        for d in ("rerun_a", "rerun_b")
    ]
    identical = _timing_free(a) == _timing_free(b) and logs[0] == logs[1]
    return {"metrics_a": a, "metrics_b": b, "identical": identical}


def _without_checkpoint(rerun: dict[str, Any]) -> dict[str, Any]:
    return {
        "metrics_a": _timing_free(rerun["metrics_a"]),
        "metrics_b": _timing_free(rerun["metrics_b"]),
        "identical": rerun["identical"],
    }


def _resume(ctx: RunContext, demo: list[str], reference: Path) -> dict[str, Any]:
    """Stop mid-epoch, off the checkpoint grid (the resume must restore the data position), resume
    to the end, and compare the final checkpoint's tensors with the unbroken run's."""
    k = ctx.config["demo_steps"]
    stop = 3 * k // 8
    _sub_run(ctx, "killed", [*demo, f"trainer.max_steps={stop}"])
    resumed = [*demo, f"trainer.max_steps={k}", f"resume={ctx.out_dir / 'killed'}"]
    _sub_run(ctx, "resumed", resumed)
    ref, _ = read_checkpoint(reference)
    got, _ = read_checkpoint(ctx.out_dir / "resumed" / "checkpoints" / reference.name)
    diffs = {n: float((ref[n].double() - got[n].double()).abs().max()) for n in ref}
    return {
        "stopped_at": stop,
        "resumed_to": k,
        "max_abs_diff_per_tensor": diffs,
        "identical": all(torch.equal(ref[n], got[n]) for n in ref),
    }
