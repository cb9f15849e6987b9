"""make doctor: each check against hand-made facts (a missing dataset, a full disk, the wrong
torch, a stale venv, a dirty tree), the dataset probe on a tmp data folder, and the exit code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from layer0_math.runrecord import git_state
from layer8_meta import doctor

GIB = 2**30


def test_torch_against_its_pin_and_build():
    wrong = doctor.check_torch("2.12.0", "2.13.0", None)
    assert wrong.level == "FAIL"
    assert wrong.line().startswith("FAIL  torch")
    assert "2.12.0 (CPU build), constraints.txt pins 2.13.0 -> fix: make setup" in wrong.line()
    ok = doctor.check_torch("2.13.0+cpu", "2.13.0", None)
    assert (ok.level, ok.detail) == ("ok", "2.13.0+cpu (CPU build, the constraints.txt pin)")
    assert "CUDA 12.8 build" in doctor.check_torch("2.13.0", "2.13.0", "12.8").detail
    assert doctor.check_torch(None, "2.13.0", None).level == "FAIL"


def test_python_against_requires_python():
    assert doctor.check_python("3.9.18", ">=3.10").level == "FAIL"
    assert "rm -rf .venv && make setup" in doctor.check_python("3.9.18", ">=3.10").line()
    assert doctor.check_python("3.10.0", ">=3.10").level == "ok"


def test_cuda_lines():
    assert doctor.check_cuda(True, "NVIDIA H200", "12.8").detail == "CUDA available: NVIDIA H200"
    cpu = doctor.check_cuda(False, None, None)
    assert cpu.level == "warn" and cpu.detail.startswith("CPU only: full presets will be slow")
    assert "no GPU is visible" in doctor.check_cuda(False, None, "12.8").detail


@pytest.mark.parametrize(
    ("gib", "level"), [(1.9, "FAIL"), (2.0, "warn"), (9.9, "warn"), (10, "ok")]
)
def test_free_disk_thresholds(gib, level):
    check = doctor.check_disk(int(gib * GIB), Path("/x/runs"))
    assert check.level == level
    assert check.detail.startswith(f"{gib:.1f} GiB free at /x/runs")
    if level != "ok":
        assert "set DLSTACK_RUNS to a disk with more than 10 GiB" in check.line()


def test_the_dataset_probe_finds_files_without_downloading(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "tinyshakespeare").mkdir(parents=True)
    (data / "tinyshakespeare" / "input.txt").write_text("First Citizen:\n")
    monkeypatch.setenv("DLSTACK_DATA", str(data))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DLSTACK_OFFLINE", raising=False)
    found = {name: (paths, error) for name, paths, error, _ in doctor.probe_datasets()}
    assert found["tinyshakespeare" if "tinyshakespeare" in found else "tiny_shakespeare"][0] == [
        data / "tinyshakespeare" / "input.txt"
    ]
    paths, error = found["mnist"]
    assert paths is None and "mnist" in error and str(data) in error
    assert found["digits"] == ([], "")  # bundled with scikit-learn: no file to find
    assert "DLSTACK_OFFLINE" not in os.environ  # restored
    assert not (tmp_path / "cache").exists()  # nothing was downloaded
    line = doctor.check_dataset("mnist", None, error, "the MNIST site").line()
    assert line.startswith("warn  data:mnist") and "-> fix: export DLSTACK_DATA=" in line


def test_venv_checks():
    base = {"prefix": "/r/.venv", "expected": "/r/.venv", "stamp_fresh": True}
    assert doctor.check_venv({**base, "missing": [], "mismatched": []}).level == "ok"
    other = doctor.check_venv({**base, "prefix": "/usr", "missing": [], "mismatched": []})
    assert other.level == "warn" and "not the project's /r/.venv" in other.detail
    missing = doctor.check_venv({**base, "missing": ["jupytext"], "mismatched": []})
    assert missing.line().endswith("not installed: jupytext -> fix: make setup")
    stale = doctor.check_venv({**base, "stamp_fresh": False, "missing": [], "mismatched": []})
    assert stale.level == "warn" and "changed since" in stale.detail
    drift = doctor.check_venv({**base, "missing": [], "mismatched": ["numpy 2.3.0 (wants 2.4.6)"]})
    assert "numpy 2.3.0 (wants 2.4.6)" in drift.detail


def test_pins_are_read_from_constraints(tmp_path):
    c = tmp_path / "constraints.txt"
    c.write_text("# comment\ntorch==2.13.0\nPyYAML==6.0.4  # yaml\nmkdocs_material==9.8.2\nx>=1\n")
    assert doctor.read_pins(c) == {"torch": "2.13.0", "pyyaml": "6.0.4", "mkdocs-material": "9.8.2"}


def test_git_clean_and_dirty(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    assert doctor.check_git(git_state(tmp_path)).level == "warn"  # not a repository
    git("init", "-q")
    (tmp_path / "a.txt").write_text("a\n")
    git("add", "a.txt")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "a")
    clean = doctor.check_git(git_state(tmp_path))
    assert clean.level == "ok" and clean.detail.endswith(", clean")
    (tmp_path / "a.txt").write_text("b\n")
    assert "uncommitted changes" in doctor.check_git(git_state(tmp_path)).detail


def _healthy(monkeypatch, tmp_path) -> None:
    torch_ok = {"installed": "2.13.0", "cuda_build": None, "available": False, "device": None}
    monkeypatch.setattr(doctor, "probe_python", lambda: ("3.11.7", ">=3.10"))
    monkeypatch.setattr(doctor, "probe_torch", lambda: torch_ok)
    monkeypatch.setattr(doctor, "read_pins", lambda: {"torch": "2.13.0"})
    monkeypatch.setattr(doctor, "probe_datasets", lambda: [("mnist", [tmp_path / "m"], "", "s")])
    monkeypatch.setattr(doctor, "probe_disk", lambda where: (50 * GIB, where))
    venv = {"prefix": "/v", "expected": "/v", "stamp_fresh": True, "missing": [], "mismatched": []}
    monkeypatch.setattr(doctor, "probe_venv", lambda: venv)
    monkeypatch.setattr(doctor, "probe_chromium", lambda: Path("/usr/bin/chromium"))
    monkeypatch.setattr(doctor, "probe_git", lambda: {"commit": "a" * 40, "dirty": False})


def test_exit_code_is_1_exactly_when_a_check_fails(monkeypatch, tmp_path, capsys):
    _healthy(monkeypatch, tmp_path)
    assert doctor.main(["--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 9 and out[-1] == "doctor: 8 checks, 1 to look at (warn); ready"  # CPU only
    monkeypatch.setattr(doctor, "probe_disk", lambda where: (GIB // 2, where))
    old_torch = {**doctor.probe_torch(), "installed": "2.11.0"}
    monkeypatch.setattr(doctor, "probe_torch", lambda: old_torch)
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert "FAIL  disk" in out and "FAIL  torch" in out
    assert out.splitlines()[-1] == "doctor: 8 checks, 1 to look at (warn); FAIL: torch, disk"
