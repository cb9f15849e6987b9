"""The run record: run folders, manifests, artifacts, the layer CLI and its table."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

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


def test_full_preset_lists_the_changes_to_quick():
    @lab.deliverable(quick={"a": 1, "b": 2}, full={"b": 20})
    def sized(ctx):
        return {}

    assert lab.spec_of(sized).presets == {"quick": {"a": 1, "b": 2}, "full": {"a": 1, "b": 20}}
    assert lab.resolve_config(sized, "full", {"a": 5}) == {"a": 5, "b": 20}
    with pytest.raises(ValueError, match=r"\['c'\] that quick lacks.*\['a'\]"):
        lab.deliverable(quick={"a": 1}, full={"c": 2})


def _write_package(root, name, files):
    """A fake layer package under ``root`` (put on sys.path by the caller)."""
    for rel, text in files.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_a_deliverables_package_is_discovered_in_all_order(tmp_path, monkeypatch):
    _write_package(
        tmp_path,
        "layer9_pkg",
        {
            "__init__.py": "",
            "deliverables/__init__.py": """
                \"\"\"zeta then alpha.\"\"\"
                from layer9_pkg.deliverables.alpha import alpha
                from layer9_pkg.deliverables.zeta import zeta

                __all__ = ["zeta", "alpha"]
            """,
            "deliverables/alpha.py": """
                from layer0_math.lab import deliverable

                @deliverable(quick={"k": 1})
                def alpha(ctx):
                    return {"k": ctx.config["k"]}
            """,
            "deliverables/zeta.py": """
                from layer0_math.lab import deliverable

                @deliverable(quick={})
                def zeta(ctx):
                    return {}
            """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("layer9_pkg.deliverables")
    assert [lab.spec_of(fn).name for fn in lab.deliverables_of(module)] == ["zeta", "alpha"]
    assert lab.run_deliverable(module.alpha, runs_dir=tmp_path / "r") == {"k": 1}
    assert lab.latest_run_dir("layer9_pkg", "alpha", tmp_path / "r").parent.name == "alpha"
    del module.__all__
    with pytest.raises(TypeError, match="__all__"):
        lab.deliverables_of(module)


def _manifest(run):
    return json.loads((run / "manifest.json").read_text())


def test_open_run_records_running_then_ok(tmp_path, monkeypatch):
    monkeypatch.setenv("DLSTACK_PARENT_RUN_ID", "parent-123")
    with lab.open_run(
        "layer9_x", "train", preset="hydra", seed=1, config={"lr": 0.1}, runs_dir=tmp_path,
        kind="train",
    ) as ctx:  # fmt: skip
        during = _manifest(ctx.out_dir)
        ctx.record_metrics({"loss": 0.5})
    after = _manifest(ctx.out_dir)
    assert during["status"] == "running" and after["status"] == "ok"
    assert after["schema_version"] == lab.SCHEMA_VERSION and after["kind"] == "train"
    assert after["run_id"] == ctx.run_id == during["run_id"] and len(ctx.run_id) >= 16
    assert after["parent_id"] == "parent-123" and after["error"] is None
    assert after["config_hash"] == lab.config_hash({"lr": 0.1}) != lab.config_hash({"lr": 0.2})
    assert json.loads((ctx.out_dir / "metrics.json").read_text()) == {"loss": 0.5}
    assert (ctx.out_dir.parent / "latest").resolve() == ctx.out_dir.resolve()


def test_open_run_in_a_given_folder_with_an_explicit_parent(tmp_path):
    with lab.open_run(
        "layer9_x", "sub", preset="quick", seed=0, config={}, run_dir=tmp_path / "a" / "main",
        parent_id="p1",
    ) as ctx:  # fmt: skip
        pass
    assert ctx.out_dir == tmp_path / "a" / "main"
    assert _manifest(ctx.out_dir)["parent_id"] == "p1"
    with lab.open_run(
        "layer9_x", "sub", preset="quick", seed=0, config={}, runs_dir=tmp_path
    ) as c2:
        pass
    assert c2.run_id != ctx.run_id and _manifest(c2.out_dir)["parent_id"] is None


def test_the_config_hash_is_of_the_config_the_run_was_opened_with(tmp_path):
    with lab.open_run("layer9_x", "t", preset="q", seed=0, config={"a": 1}, runs_dir=tmp_path) as c:
        c.config["a"] = 2  # e.g. sizes filled in from the data; the manifest shows them
    man = _manifest(c.out_dir)
    assert man["config"] == {"a": 2} and man["config_hash"] == lab.config_hash({"a": 1})


def test_open_run_records_failure_and_interrupt(tmp_path):
    with pytest.raises(ValueError, match="bad lr"):
        with lab.open_run("layer9_x", "t", preset="q", seed=0, config={}, runs_dir=tmp_path) as c:
            raise ValueError("bad lr -1\nsecond line")
    failed = _manifest(c.out_dir)
    assert failed["status"] == "failed" and failed["error"] == "ValueError: bad lr -1"
    assert "Traceback" in (c.out_dir / "error.txt").read_text()
    assert not (c.out_dir.parent / "latest").exists()
    with pytest.raises(KeyboardInterrupt):
        with lab.open_run("layer9_x", "t", preset="q", seed=0, config={}, runs_dir=tmp_path) as c:
            raise KeyboardInterrupt
    assert _manifest(c.out_dir)["status"] == "interrupted"
    assert _manifest(c.out_dir)["error"] == "interrupted by SIGINT"


def test_a_run_stopped_on_purpose_is_recorded_stopped_without_a_traceback(tmp_path):
    class Pruned(lab.RunStopped):
        pass

    with pytest.raises(Pruned):
        with lab.open_run("layer9_x", "t", preset="q", seed=0, config={}, runs_dir=tmp_path) as c:
            raise Pruned("pruned at step 40: eval/loss=2.3")
    stopped = _manifest(c.out_dir)
    assert stopped["status"] == "stopped"
    assert stopped["error"] == "Pruned: pruned at step 40: eval/loss=2.3"
    assert not (c.out_dir / "error.txt").exists()
    assert not (c.out_dir.parent / "latest").exists()  # latest: the newest ok run only


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


# ----------------------------------------------------------------------------- faults


def _full_disk(monkeypatch, when):
    """Make atomic writes fail with ENOSPC for the paths ``when(path)`` selects."""
    from layer0_math import runrecord

    real = runrecord._atomic_write_bytes

    def write(path, data):
        if when(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(runrecord, "_atomic_write_bytes", write)


def _only_run(tmp_path, name):
    (run,) = (tmp_path / __name__.split(".")[0] / name).glob("[0-9]*")
    return run


def test_a_full_disk_while_writing_metrics_is_recorded_as_failed(tmp_path, monkeypatch):
    _full_disk(monkeypatch, lambda path: path.name == "metrics.json")
    with pytest.raises(OSError, match="No space left"):
        lab.run_deliverable(counting, runs_dir=tmp_path)
    man = _manifest(_only_run(tmp_path, "counting"))
    assert man["status"] == "failed"
    assert man["error"] == "OSError: [Errno 28] No space left on device"


def test_a_disk_that_fills_during_the_run_still_gets_a_true_status(tmp_path, monkeypatch):
    full = {"now": False}

    @lab.deliverable(quick={})
    def fills_the_disk(ctx):
        full["now"] = True  # from here on every atomic write fails, the manifest's too
        return {"x": 1}

    _full_disk(monkeypatch, lambda path: full["now"])
    with pytest.raises(OSError, match="No space left"):
        lab.run_deliverable(fills_the_disk, runs_dir=tmp_path)
    run = _only_run(tmp_path, "fills_the_disk")
    assert _manifest(run)["status"] == "failed" and not (run / "metrics.json").exists()


def test_a_write_that_fails_midway_leaves_no_temporary_file(tmp_path, monkeypatch):
    from layer0_math import runrecord

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runrecord.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        lab.write_json(tmp_path / "m.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_unfinished_runs_and_partial_files_are_never_read(tmp_path):
    lab.run_deliverable(counting, seed=1, runs_dir=tmp_path)
    done = lab.latest_run_dir(__name__.split(".")[0], "counting", tmp_path)
    newer = done.parent / "99990101-000000-000000"  # killed: metrics written, still "running"
    newer.mkdir()
    (newer / "metrics.json").write_text("{}")
    (newer / "manifest.json").write_text(json.dumps({"status": "running"}))
    (done / ".values.safetensors.tmp-4242").write_bytes(b"half")
    assert lab.latest_run_dir(__name__.split(".")[0], "counting", tmp_path) == done
    with pytest.raises(lab.MissingArtifactError) as err:
        lab.load_arrays(__name__.split(".")[0], "counting", "other.safetensors", tmp_path)
    assert "tmp-4242" not in str(err.value) and "values.safetensors" in str(err.value)


def test_sigterm_inside_a_run_records_interrupted_and_restores_the_handler(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(lab.RunInterrupted) as err:
        with lab.open_run("layer9_x", "t", preset="q", seed=0, config={}, runs_dir=tmp_path) as c:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this sleep
    assert err.value.signum == signal.SIGTERM
    man = _manifest(c.out_dir)
    assert man["status"] == "interrupted" and man["error"] == "interrupted by SIGTERM"
    assert man["seconds"] < 4 and signal.getsignal(signal.SIGTERM) is before


def test_an_unknown_device_is_refused_before_a_run_folder_exists(tmp_path):
    for good in ("cpu", "cuda", "cuda:1", "mps", None):
        assert lab.check_device(good) == good
    with pytest.raises(ValueError, match=r"unknown device 'tpu'; expected cpu, cuda, cuda:N"):
        lab.run_deliverable(counting, device="tpu", runs_dir=tmp_path)
    with pytest.raises(ValueError, match="'cuda:x'"):
        lab.check_device("cuda:x")
    assert not tmp_path.joinpath(__name__.split(".")[0]).exists()


CPUINFO_X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu
"""


def test_cpu_info_reads_the_model_and_bf16_flags(monkeypatch):
    from layer0_math import runrecord

    model, flags = runrecord._cpuinfo_fields(CPUINFO_X86)
    assert model == "Intel(R) Xeon(R) Platinum 8480+" and "amx_bf16" in flags
    assert runrecord._cpuinfo_fields("processor : 0\nFeatures : fp asimd bf16\n") == (
        None,
        {"fp", "asimd", "bf16"},
    )
    info = lab.cpu_info()
    assert set(info) == {"model", "bf16", "flags_bf16"} and info["model"]
    if os.path.exists("/proc/cpuinfo"):  # the same answer as reading the file another way
        text = open("/proc/cpuinfo").read()
        names = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln]
        assert not names or info["model"] == names[0]
        assert info["bf16"] == any(f" {f}" in text for f in ("avx512_bf16", "amx_bf16", "bf16"))


def test_the_manifest_names_the_host_cpu_and_the_uncommitted_changes(tmp_path):
    lab.run_deliverable(counting, runs_dir=tmp_path)
    man = _manifest(lab.latest_run_dir(__name__.split(".")[0], "counting", tmp_path))
    assert man["host"]["cpu"] == lab.cpu_info()
    assert set(man["git"]) == {"commit", "dirty", "changes_hash"}
    assert (man["git"]["changes_hash"] is None) == (man["git"]["dirty"] is False)


def test_a_sub_run_inside_a_run_folder_does_not_point_latest_there(tmp_path):
    with lab.open_run(
        "layer9_pkg", "outer", preset="quick", seed=0, config={}, runs_dir=tmp_path
    ) as outer:
        with lab.open_run(
            "layer9_pkg",
            "inner",
            preset="quick",
            seed=0,
            config={},
            run_dir=outer.out_dir / "train",
            parent_id=outer.run_id,
        ):
            pass
    assert not (outer.out_dir / "latest").exists()
    assert (outer.out_dir.parent / "latest").resolve() == outer.out_dir.resolve()
