"""Reproduce: rerun from the manifest alone, in place or in a worktree of the run's commit.

Most cases use a throwaway git repository holding a one-line deliverable (``toyh1``) whose
metric depends on a constant in its source: a rerun that imported the wrong commit's code would
get another value, so REPRODUCED after HEAD moved on proves the worktree's code ran. One slow
test reproduces a real layer 0 deliverable.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from layer0_math.lab import config_hash, new_run_dir, read_manifest, write_json
from layer8_meta import reproduce
from layer8_meta.registry import is_timing
from layer8_meta.reproduce import MetricCheck, check_metrics

TOY = """import os
import time

from layer0_math.lab import deliverable

VALUE = {value}


@deliverable(quick={{"scale": 2.0}})
def toy(ctx):
    if os.environ.get("TOY_FAIL"):
        raise RuntimeError("toy failure")
    return {{"score": VALUE * ctx.config["scale"] + float(ctx.rng.random()),
            "train_seconds": time.perf_counter()}}


__all__ = ["toy"]
"""
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]


def _commit(repo: Path, value: float) -> None:
    (repo / "toyh1" / "deliverables" / "__init__.py").write_text(TOY.format(value=value))
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*GIT, "commit", "-qm", f"v{value}"], cwd=repo, check=True)


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the toy repository, a runs dir outside it)."""
    repo, runs = tmp_path / "toy", tmp_path / "runs"
    (repo / "toyh1" / "deliverables").mkdir(parents=True)
    (repo / "toyh1" / "__init__.py").write_text("")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _commit(repo, 1.0)
    monkeypatch.syspath_prepend(str(repo))
    monkeypatch.setenv("DLSTACK_RUNS", str(runs))
    monkeypatch.setenv("DLSTACK_PROGRESS", "0")
    monkeypatch.delenv("DLSTACK_PARENT_RUN_ID", raising=False)
    return repo, runs


def run_original(repo: Path, runs: Path) -> Path:
    run = new_run_dir("toyh1", "toy", runs)
    cmd = [
        sys.executable,
        "-m",
        "layer0_math.runner",
        "_one",
        "toyh1",
        "toy",
        "--run-dir",
        str(run),
    ]
    subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    assert read_manifest(run)["status"] == "ok"
    return run


def test_metric_checks_and_timings() -> None:
    assert is_timing("train_seconds") and is_timing("tokens_per_second") and is_timing("mfu")
    assert not is_timing("val_loss") and not is_timing("steps")
    checks, timings = check_metrics({"a": 1.0, "b": 2.0, "t_seconds": 3.0}, {"a": 1.0, "c": 1.0})
    assert [c.name for c in checks] == ["a", "b", "c"] and timings == ["t_seconds"]
    assert [c.ok(0.0) for c in checks] == [True, False, False]  # b, c: missing on one side
    near = MetricCheck("x", 100.0, 100.0 + 1e-4)
    assert not near.ok(0.0) and not near.ok(1e-7) and near.ok(2e-6)  # |diff| / 100 = 1e-6


@pytest.mark.slow
def test_in_place_reproduction_and_a_planted_difference(toy, capsys) -> None:
    repo, runs = toy
    original = run_original(repo, runs)
    assert reproduce.main([str(original)]) == 0
    out = capsys.readouterr().out
    assert "the tree is clean: rerun here" in out and "REPRODUCED (exact)" in out
    assert re.search(r"^score .* \| ok$", out, re.M)
    assert "not compared: train_seconds" in out
    first = read_manifest(original)
    again = [m for m in map(read_manifest, (runs / "toyh1" / "toy").glob("2*")) if m["parent_id"]]
    assert [m["parent_id"] for m in again] == [first["run_id"]]  # the rerun is its child

    metrics = json.loads((original / "metrics.json").read_text())
    write_json(original / "metrics.json", {**metrics, "score": metrics["score"] * (1 + 1e-12)})
    assert reproduce.main([first["run_id"][:10]]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^score .* \| DIFF$", out, re.M) and "DIFFERENT (exact)" in out

    config = {"scale": 3.0}
    write_json(
        original / "manifest.json", {**first, "config": config, "config_hash": config_hash(config)}
    )
    assert reproduce.main([first["run_id"], "--tolerance", "1e-9"]) == 1
    out = capsys.readouterr().out  # the score is within 1e-9 now; the config is not the preset's
    assert (
        re.search(r"^score .* \| ok$", out, re.M) and "DIFFERENT (relative tolerance 1e-09)" in out
    )
    assert "config: DIFF" in out and "scale: 3.0 -> 2.0" in out


def test_worktree_of_an_old_commit_and_cleanup(toy, capsys, monkeypatch) -> None:
    repo, runs = toy
    (repo / "scratch.txt").write_text("uncommitted")
    original = run_original(repo, runs)
    (repo / "scratch.txt").unlink()
    _commit(repo, 5.0)  # HEAD moves on: the code now gives another score
    assert reproduce.main([str(original)]) == 0
    out = capsys.readouterr().out
    assert "HEAD has moved on" in out and "FLAG: the run was recorded on a dirty tree" in out
    assert "code: ok (the rerun recorded commit" in out  # it imported the worktree's code
    assert "REPRODUCED" in out
    tree = Path(re.search(r"in (\S+/tree) ->", out).group(1))
    assert not tree.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True)
    assert len(listed.stdout.splitlines()) == 1

    monkeypatch.setenv("TOY_FAIL", "1")  # the rerun fails: exit 1, and the worktree still goes
    assert reproduce.main([str(original)]) == 1
    out = capsys.readouterr().out
    assert "failed: RuntimeError: toy failure" in out
    assert not Path(re.search(r"in (\S+/tree) ->", out).group(1)).exists()


def test_bad_input_is_one_line(toy, capsys) -> None:
    repo, runs = toy
    with pytest.raises(SystemExit) as info:
        reproduce.main(["x", "--tolerance", "-1"])
    assert info.value.code == 2
    assert reproduce.main(["nope"]) == 2
    base = {"schema_version": 1, "status": "ok", "start": "2026-01-01T00:00:00", "config": {}}
    write_json(runs / "toyh1/toy/1/train/manifest.json", {**base, "run_id": "sub1",
               "parent_id": "p0", "kind": "train", "layer": "layer3_framework",
               "deliverable": "train"})  # fmt: skip
    write_json(runs / "experiments/wd/1/manifest.json", {**base, "run_id": "exp1",
               "kind": "deliverable", "layer": "experiments", "deliverable": "wd",
               "preset": "quick"})  # fmt: skip
    assert reproduce.main(["sub1"]) == reproduce.main(["exp1"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4 and all(e.startswith("error: ") for e in errors)
    assert "'-1'" in errors[0] and "'nope'" in errors[1] and "reproduce its parent p0" in errors[2]
    assert "run-experiment experiments/wd --preset quick" in errors[3]


@pytest.mark.slow
def test_a_real_layer0_deliverable_reproduces(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DLSTACK_RUNS", str(tmp_path))
    monkeypatch.setenv("DLSTACK_PROGRESS", "0")
    monkeypatch.delenv("DLSTACK_PARENT_RUN_ID", raising=False)
    run = new_run_dir("layer0_math", "gd_quadratic", tmp_path)
    cmd = [sys.executable, "-m", "layer0_math.runner", "_one", "layer0_math", "gd_quadratic"]
    subprocess.run([*cmd, "--run-dir", str(run)], check=True, capture_output=True)
    assert reproduce.main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED (exact)" in out and out.count("| ok") > 20
