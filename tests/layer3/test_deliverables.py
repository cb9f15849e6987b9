"""The pipeline and profiling deliverables on small configs: the reproducibility demonstrations
hold and every sub-run names the deliverable's run as its parent; profiling leaves its table,
trace and throughput figures, labelled with the hardware that measured them."""

import json

import pytest
import torch

from layer0_math.lab import cpu_info, deliverables_of, run_deliverable
from layer3_framework import deliverables


def test_the_package_lists_its_deliverables_in_run_order():
    names = [fn.__name__ for fn in deliverables_of(deliverables)]
    assert names == ["torch_ports", "training_pipeline", "profiling"]


@pytest.mark.slow
def test_training_pipeline_reruns_identically_and_resumes_exactly(tmp_path):
    small = {
        "data_source": "synthetic",
        "epochs": 1,
        "demo_steps": 8,
        "demo_n_train": 256,
        "batch_size": 32,
    }
    m = run_deliverable(deliverables.training_pipeline, overrides=small, runs_dir=tmp_path)
    assert m["identical_rerun"] == 1 and m["identical_resume"] == 1
    assert m["resume_max_abs_diff"] == 0.0 and m["steps"] == 8
    run = next(tmp_path.rglob("identical.json")).parent
    assert list((run / "main" / "wandb").glob("offline-run-*"))  # W&B offline in the run folder
    assert list((run / "main" / "checkpoints").glob("step_*.safetensors"))
    run_id = json.loads((run / "manifest.json").read_text())["run_id"]
    subs = ("main", "rerun_a", "rerun_b", "killed", "resumed")
    parents = {d: json.loads((run / d / "manifest.json").read_text())["parent_id"] for d in subs}
    assert parents == dict.fromkeys(subs, run_id)


@pytest.mark.slow
def test_profiling_writes_table_trace_and_throughput(tmp_path):
    small = {"batch_size": 8, "warmup": 1, "steps": 2, "profile_steps": 1, "compile": False}
    m = run_deliverable(deliverables.profiling, overrides=small, runs_dir=tmp_path)
    run = next(tmp_path.rglob("trace.json")).parent
    assert "traceEvents" in json.loads((run / "trace.json").read_text())
    assert "aten::" in (run / "top_operators.txt").read_text()
    assert m["samples_per_sec_fp32"] > 0 and m["bf16_speedup"] > 0
    assert m["top_operator"].startswith("aten::") and 0 < m["top_operator_share"] <= 1
    cpu = cpu_info()  # the speed-ups are labelled with the machine that measured them
    assert m["cpu_model"] == cpu["model"] and m["cpu_bf16_instructions"] == int(cpu["bf16"])
    assert m["torch_version"] == torch.__version__ and m["torch_threads"] >= 1
    assert cpu["model"] in (run / "summary.md").read_text()
