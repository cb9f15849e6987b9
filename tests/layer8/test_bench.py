"""bench: a benchmark script run inside a run record, its last JSON line as the run's metrics.

Fake benchmark scripts in ``tmp_path`` (the real ones take minutes); what they print is known,
so output.txt, metrics.json and the registry's rows are compared with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layer0_math.lab import read_manifest
from layer8_meta import bench
from layer8_meta.registry import Registry

GOOD = """import json
print("op    | ours | torch")
print("conv  | 2 ms | 1 ms")
print(json.dumps({"conv_vs_torch": 2.0, "adamw": {"ours_ms": 3.5, "torch_ms": None}}))
"""
NO_JSON = 'print("conv | 2 ms")\nprint("done")\n'
CRASHES = 'import sys\nprint("starting")\nprint("boom", file=sys.stderr)\nsys.exit(3)\n'


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    for name, text in {"good": GOOD, "nojson": NO_JSON, "crashes": CRASHES}.items():
        (folder / f"{name}.py").write_text(text)
    (folder / "_helper.py").write_text("")
    return folder


def only_run(runs: Path, name: str) -> Path:
    (run,) = (runs / "benchmarks" / name).glob("2*")
    return run


def test_a_benchmark_becomes_a_run(scripts: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    assert bench.main(["good", "--dir", str(scripts), "--runs-dir", str(runs)]) == 0
    run = only_run(runs, "good")
    man = read_manifest(run)
    assert (man["kind"], man["layer"], man["deliverable"], man["status"]) == (
        "benchmark", "benchmarks", "good", "ok"
    )  # fmt: skip
    assert man["config"] == {"script": str(scripts / "good.py"), "args": []}
    lines = (run / "output.txt").read_text().splitlines()
    assert lines[:2] == ["op    | ours | torch", "conv  | 2 ms | 1 ms"] and len(lines) == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == {"conv_vs_torch": 2.0, "adamw.ours_ms": 3.5, "adamw.torch_ms": None}
    out = capsys.readouterr().out
    assert "conv  | 2 ms" in out and f"recorded in {run}" in out  # echoed as it ran
    reg = Registry.open(runs)
    reg.index()
    (row,) = reg.runs(kind="benchmark")
    assert row.metrics == {"conv_vs_torch": 2.0, "adamw.ours_ms": 3.5}  # the null is no number


def test_failures_are_failed_runs_with_the_reason(scripts: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    argv = ["nojson", "crashes", "--dir", str(scripts), "--runs-dir", str(runs)]
    assert bench.main(argv) == 1
    nojson, crashes = (
        read_manifest(only_run(runs, "nojson")),
        read_manifest(only_run(runs, "crashes")),
    )
    assert nojson["status"] == crashes["status"] == "failed"
    assert "last line is not a JSON object: 'done'" in nojson["error"]
    assert "exited with status 3: boom" in crashes["error"]
    assert (only_run(runs, "crashes") / "stderr.txt").read_text() == "boom\n"
    assert not (only_run(runs, "nojson") / "metrics.json").exists()
    assert capsys.readouterr().out.count("FAILED") == 2


def test_last_json_and_bad_names(scripts: Path, capsys) -> None:
    assert bench.last_json('table\n{"a": 1, "b": {"c": 2}}\n\n', "x") == {"a": 1, "b.c": 2}
    for text in ("", "[1, 2]", '{"a": 1} trailing'):
        with pytest.raises(bench.BenchmarkError, match="not a JSON object"):
            bench.last_json(text, "x")
    assert sorted(bench.benchmark_scripts(scripts)) == ["crashes", "good", "nojson"]
    assert bench.main(["nope", "--dir", str(scripts)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown benchmark(s) ['nope']") and err.count("\n") == 1
