"""The run record: run folders, manifests, artifacts, the layer CLI and its table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from layer0_math import lab


@lab.deliverable(quick={"n": 3}, full={"n": 30}, headline=["total"])
def counting(ctx: lab.RunContext) -> dict:
    values = ctx.rng.normal(size=ctx.config["n"])
    ctx.save_arrays("values.safetensors", {"values": values}, meta={"n": ctx.config["n"]})
    return {"total": float(values.sum()), "n": ctx.config["n"]}


def test_run_folder_manifest_and_latest(tmp_path):
    metrics = lab.run_deliverable(counting, preset="full", seed=3, runs_dir=tmp_path)
    assert metrics["n"] == 30
    run = lab.latest_run_dir(__name__.split(".")[0], "counting", tmp_path)
    assert (run.parent / "latest").resolve() == run.resolve()
    manifest = json.loads((run / "manifest.json").read_text())
    for key in (
        "deliverable",
        "preset",
        "seed",
        "config",
        "git",
        "versions",
        "device",
        "start",
        "seconds",
        "peak_memory",
        "status",
    ):
        assert key in manifest, key
    assert (
        manifest["preset"] == "full" and manifest["seed"] == 3 and manifest["config"] == {"n": 30}
    )
    assert manifest["status"] == "ok" and manifest["peak_memory"]["rss_mib"] > 10
    assert json.loads((run / "metrics.json").read_text()) == metrics


def test_same_seed_same_metrics_and_artifacts_load(tmp_path):
    a = lab.run_deliverable(counting, seed=5, runs_dir=tmp_path)
    b = lab.run_deliverable(counting, seed=5, runs_dir=tmp_path)
    c = lab.run_deliverable(counting, seed=6, runs_dir=tmp_path)
    assert a == b and a != c
    arrays, meta = lab.load_arrays(
        __name__.split(".")[0], "counting", "values.safetensors", tmp_path
    )
    np.testing.assert_allclose(arrays["values"].sum(), c["total"])
    assert meta == {"n": 3}


def test_unknown_override_and_preset(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key 'm'.*\['n'\]"):
        lab.run_deliverable(counting, overrides={"m": 1}, runs_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        lab.run_deliverable(counting, preset="huge", runs_dir=tmp_path)


def test_failure_is_recorded(tmp_path):
    @lab.deliverable(quick={})
    def broken(ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        lab.run_deliverable(broken, runs_dir=tmp_path)
    (run,) = (tmp_path / __name__.split(".")[0] / "broken").glob("[0-9]*")
    assert "RuntimeError: boom" in (run / "error.txt").read_text()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: boom"
    with pytest.raises(lab.MissingArtifactError, match="no finished run"):
        lab.latest_run_dir(__name__.split(".")[0], "broken", tmp_path)


def test_missing_artifact_names_the_make_target(tmp_path):
    with pytest.raises(lab.MissingArtifactError, match="make layer2"):
        lab.load_arrays("layer2_primitives", "cnn_cifar10", "model.safetensors", tmp_path)


def test_presets_must_share_keys():
    with pytest.raises(ValueError, match="same keys"):
        lab.deliverable(quick={"a": 1}, full={"b": 2})


def test_summary_table_columns():
    table = lab.summary_table(
        [lab.Outcome("layer9_x", "d", "ok", 1.25, {"acc": 0.98765}, "runs/x")]
    )
    header, _, row = table.splitlines()
    assert [c.strip() for c in header.split("|")] == [
        "deliverable",
        "status",
        "headline metrics",
        "seconds",
        "artifacts",
    ]
    assert "acc=0.9877" in row and "1.2" in row


def test_cli_runs_the_rest_after_a_failure_and_exits_nonzero(tmp_path):
    pkg = tmp_path / "layer9_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "deliverables.py").write_text(
        textwrap.dedent("""
        from layer0_math.lab import deliverable

        @deliverable(quick={})
        def first_fails(ctx):
            raise ValueError("bad value 7, expected 3")

        @deliverable(quick={"k": 2}, headline=["k"])
        def second_runs(ctx):
            return {"k": ctx.config["k"]}
    """)
    )
    (pkg / "__main__.py").write_text(
        "from layer0_math.lab import cli\nfrom layer9_demo import deliverables\n"
        "raise SystemExit(cli(deliverables))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "layer9_demo", "--runs-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    table = proc.stdout.split("\n\n")[-1]
    assert "first_fails | FAILED" in table and "ValueError: bad value 7, expected 3" in table
    assert "Traceback" not in proc.stderr and "error.txt" in table
    assert "second_runs | ok" in table and "k=2" in table


def test_save_arrays_keeps_shapes_and_dtypes(tmp_path):
    arrays = {"scalar": np.asarray(7, dtype=np.int64), "matrix": np.arange(6.0).reshape(2, 3).T}
    arrays_back, meta = lab.read_arrays(
        lab.save_arrays(tmp_path / "a.safetensors", arrays, {"k": 1})
    )
    assert meta == {"k": 1} and not list(tmp_path.glob(".*tmp*"))
    for k, v in arrays.items():
        assert arrays_back[k].shape == v.shape and arrays_back[k].dtype == v.dtype
        np.testing.assert_array_equal(arrays_back[k], v)


def test_blas_threads_config_limits_blas_inside_the_deliverable(tmp_path):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    @lab.deliverable(quick={"blas_threads": 1})
    def count_threads(ctx):
        blas = [
            p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"
        ]
        return {"max_blas_threads": max(blas, default=1)}

    assert lab.run_deliverable(count_threads, runs_dir=tmp_path)["max_blas_threads"] == 1
