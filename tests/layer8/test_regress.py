"""regress: the newest ok runs against a baseline file, with directions and tolerances.

Runs are real run records in ``tmp_path``; the baseline is parsed back from disk and each verdict
is checked against a hand-computed one (5 % of 1.0 is 0.05: 1.06 is worse, 1.04 is not).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from layer0_math.lab import open_run
from layer8_meta import regress
from layer8_meta.registry import Registry
from layer8_meta.regress import direction_of, judge, target_directions


def make_run(runs: Path, layer: str, name: str, metrics: dict, kind: str = "deliverable") -> Path:
    with open_run(layer, name, preset="quick", seed=0, config={}, runs_dir=runs, kind=kind) as ctx:
        ctx.record_metrics(metrics)
    return ctx.out_dir


def table_rows(out: str) -> list[list[str]]:
    """The body rows of the findings table printed by regress."""
    lines = [line for line in out.splitlines() if " | " in line]
    return [[c.strip() for c in line.split(" | ")] for line in lines[1:]]


def test_judge_by_hand() -> None:
    assert judge(1.0, 1.049, "min", 0.05) == "ok"
    assert judge(1.0, 1.051, "min", 0.05) == "REGRESSION"
    assert judge(1.0, 0.94, "min", 0.05) == "improved"
    assert judge(-2.0, -2.2, "max", 0.05) == "REGRESSION"  # relative to |value| = 2: 0.1
    assert judge(-2.0, -2.09, "max", 0.05) == "ok"
    assert judge(0.8, 0.9, "max", 0.1) == "improved"
    assert judge(1.0, 99.0, "ignore", 0.05) == "ok"
    assert judge(1.0, 1.0 + 1e-9, "min", 0.0) == "REGRESSION"  # tolerance 0: exact


def test_directions_from_targets_then_names(tmp_path: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "targets:\n"
        "  - {layer: l, deliverable: d, metric: score, goal: 1, direction: '<='}\n"
        "  - {layer: l, deliverable: d, metric: val_loss, goal: 1, direction: '>='}\n"
    )
    found = target_directions(targets)
    assert found == {("l", "d", "score"): "min", ("l", "d", "val_loss"): "max"}
    assert target_directions(tmp_path / "none.yaml") == {}
    reg_runs = tmp_path / "runs"
    make_run(reg_runs, "l", "d", {"score": 1.0})
    make_run(reg_runs, "benchmarks", "b", {"x": 1.0}, kind="benchmark")
    reg = Registry.open(reg_runs)
    reg.index()
    deliv, benchmark = reg.latest("l", "d"), reg.latest("benchmarks", "b")
    assert direction_of(deliv, "score", found) == "min"  # the target wins over the name (max)
    assert direction_of(deliv, "score", {}) == "max"
    assert direction_of(deliv, "train_seconds", {}) == "ignore"  # a deliverable's timing
    assert direction_of(benchmark, "train_seconds", {}) == "min"  # a benchmark's point
    assert direction_of(benchmark, "conv_vs_torch", {}) == "min"


def test_update_then_regress(tmp_path: Path, capsys) -> None:
    runs, baseline = tmp_path / "runs", tmp_path / "baselines" / "regress.json"
    make_run(runs, "la", "x", {"val_loss": 1.0, "acc": 0.8, "train_seconds": 10.0})
    y = make_run(runs, "la", "y", {"score": 5.0})
    make_run(runs, "benchmarks", "conv", {"conv_vs_torch": 2.0}, kind="benchmark")
    argv = ["--baseline", str(baseline), "--runs-dir", str(runs)]
    assert regress.main([*argv, "--update"]) == 0
    assert str(baseline) in capsys.readouterr().out
    data = json.loads(baseline.read_text())
    x = data["entries"]["la/x"]["metrics"]
    assert x == {
        "val_loss": {"value": 1.0, "direction": "min"},
        "acc": {"value": 0.8, "direction": "max"},
        "train_seconds": {"value": 10.0, "direction": "ignore"},
    }
    assert data["entries"]["benchmarks/conv"]["metrics"]["conv_vs_torch"]["direction"] == "min"
    assert regress.main(argv) == 0  # the runs it was made from: all ok
    assert "5 ok" in capsys.readouterr().out

    x["acc"]["tolerance"] = 0.5  # hand-set, kept by --update
    data["entries"]["la/x"]["note"] = "why acc may move"
    baseline.write_text(json.dumps(data))
    make_run(runs, "la", "x", {"val_loss": 1.06, "acc": 0.5, "train_seconds": 99.0, "extra": 1})
    make_run(runs, "benchmarks", "conv", {"conv_vs_torch": 1.0}, kind="benchmark")
    make_run(runs, "la", "z", {"score": 1.0})
    with pytest.raises(RuntimeError):
        with open_run("la", "z", preset="quick", seed=0, config={}, runs_dir=runs):
            raise RuntimeError("z broke")
    shutil.rmtree(y)
    assert regress.main(argv) == 1
    rows = table_rows(capsys.readouterr().out)
    assert rows[0] == ["la/x", "val_loss", "1", "1.06", "+6.0%", "0.05 (min)", "REGRESSION"]
    assert sorted((r[0], r[1], r[-1]) for r in rows) == [
        ("benchmarks/conv", "conv_vs_torch", "improved"),  # 2.0 -> 1.0, lower is better
        ("la/x", "extra", "new metric"),
        ("la/x", "val_loss", "REGRESSION"),
        ("la/y", "-", "missing run"),
        ("la/z", "-", "latest run failed: RuntimeError: z broke"),  # after its ok run
        ("la/z", "-", "new deliverable"),
    ]  # acc (-37.5 % within its 0.5) and train_seconds (ignored) are ok: not listed

    assert regress.main([*argv, "--update"]) == 0
    data = json.loads(baseline.read_text())
    assert data["entries"]["la/x"]["metrics"]["acc"] == {
        "value": 0.5,
        "direction": "max",
        "tolerance": 0.5,
    }
    assert "la/y" in data["entries"] and "la/z" in data["entries"]  # kept; added
    assert data["entries"]["la/x"]["note"] == "why acc may move"
    assert regress.main(argv) == 0


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"entries": {"a/b": {"metrics": {"m": {"value": 1, "direction": "up"}}}}}', "'up'"),
        ('{"entries": {"a/b": {"metrics": {"m": {"value": "1", "direction": "min"}}}}}', "'1'"),
        ('{"entries": {"ab": {"metrics": {}}}}', "'ab'"),
        ("[1]", "not a baseline"),
    ],
)
def test_bad_baselines_are_one_line_errors(tmp_path: Path, capsys, text: str, says: str) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_text(text)
    assert regress.main(["--baseline", str(baseline), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    missing = ["--baseline", str(tmp_path / "none.json"), "--runs-dir", str(tmp_path / "runs")]
    assert regress.main(missing) == 2
    assert "regress --update" in capsys.readouterr().err
