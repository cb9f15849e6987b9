"""The experiment template: the scaffold writes the four files (its test stub fails), refuses
bad names and existing experiments, and a run goes into a layer-0 run record whose metrics fill
the README's results section and nothing else; the worked example's check passes on its run."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from layer0_math.lab import REPO_ROOT, runs_root
from layer7_research.experiments import (
    fill_results,
    load_config,
    new_experiment,
    run_experiment,
)
from layer7_research.experiments.scaffold import END, START, main

EXAMPLE = REPO_ROOT / "experiments" / "weight_decay_grokking"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"m_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaffold_writes_the_four_files(tmp_path):
    folder = new_experiment("lr_sweep", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.yaml",
        "experiment.py",
        "test_lr_sweep.py",
    ]
    readme = (folder / "README.md").read_text()
    for heading in ("## Hypothesis", "## Setup", "## Config", "## Results", "## Conclusion"):
        assert heading in readme
    assert readme.index(START) < readme.index(END)
    for f in folder.iterdir():
        assert "$name" not in f.read_text() and "lr_sweep" in f.read_text(), f.name
    assert load_config(folder, "quick") == ({"steps": 100}, 0)
    assert load_config(folder, "full") == ({"steps": 10000}, 0)


def test_the_scaffolded_test_fails_asking_for_the_check(tmp_path):
    folder = new_experiment("lr_sweep", tmp_path)
    stub = _module(folder / "test_lr_sweep.py")
    with pytest.raises(pytest.fail.Exception, match="write the check of your hypothesis"):
        stub.test_hypothesis()


def test_the_scaffolded_experiment_is_a_stub_and_its_run_is_recorded_failed(tmp_path):
    folder = new_experiment("lr_sweep", tmp_path)
    with pytest.raises(NotImplementedError, match="write the experiment of lr_sweep"):
        run_experiment(folder)
    (run,) = (runs_root() / "experiments" / "lr_sweep").glob("[0-9]*")
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("name", ["", "Bad", "1abc", "with-dash", "class", "a" * 65, "../x"])
def test_bad_names_are_refused_with_a_clear_error(tmp_path, name, capsys):
    with pytest.raises(ValueError, match=f"bad experiment name {name!r}"):
        new_experiment(name, tmp_path)
    assert main([name, "--root", str(tmp_path)]) == 2
    assert "bad experiment name" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_an_existing_experiment_is_never_overwritten(tmp_path, capsys):
    folder = new_experiment("mine", tmp_path)
    (folder / "README.md").write_text("my notes")
    with pytest.raises(FileExistsError, match="already exists"):
        new_experiment("mine", tmp_path)
    assert main(["mine", "--root", str(tmp_path)]) == 2
    assert (folder / "README.md").read_text() == "my notes"


EXPERIMENT = """
def experiment(ctx):
    ctx.write_json("seen.json", {"steps": ctx.config["steps"]})
    return {"steps_times_two": 2.0 * ctx.config["steps"], "seed": ctx.seed}
"""


def test_a_run_is_recorded_and_fills_only_the_results(tmp_path):
    folder = new_experiment("doubling", tmp_path)
    (folder / "experiment.py").write_text(EXPERIMENT)
    before = (folder / "README.md").read_text()
    run, metrics = run_experiment(folder)
    assert run.parent == runs_root() / "experiments" / "doubling"
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "ok" and man["config"] == {"steps": 100} and man["preset"] == "quick"
    assert (
        json.loads((run / "metrics.json").read_text())
        == metrics
        == {
            "steps_times_two": 200.0,
            "seed": 0,
        }
    )
    after = (folder / "README.md").read_text()
    head, tail = before.split(START)[0], before.split(END)[1]
    assert after.startswith(head + START) and after.endswith(END + tail)
    assert "| steps_times_two | 200 |" in after and "Not run yet" not in after
    run2, _ = run_experiment(folder, "full")  # a rerun replaces the section, once
    again = (folder / "README.md").read_text()
    assert again.count(START) == 1 and "| steps_times_two | 2e+04 |" in again
    assert "| steps_times_two | 200 |" not in again and run2 != run


def test_results_need_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="lacks the markers"):
        fill_results(readme, "x")


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'medium'"):
        load_config(new_experiment("x", tmp_path), "medium")


def test_worked_example_check_can_fail():
    check = _module(EXAMPLE / "test_weight_decay_grokking.py").check
    good = {
        "train_accuracy_no_decay": 1.0,
        "test_accuracy_no_decay": 0.3,
        "test_accuracy_decay": 0.5,
    }
    check(good)
    for bad in ({"test_accuracy_no_decay": 0.45}, {"test_accuracy_decay": 0.2}):
        with pytest.raises(AssertionError):
            check({**good, **bad})


@pytest.mark.slow
def test_worked_example_hypothesis_holds_on_its_run(tmp_path):
    folder = tmp_path / EXAMPLE.name
    shutil.copytree(EXAMPLE, folder)
    run, metrics = run_experiment(folder)
    assert (run / "accuracy.png").exists()
    _module(folder / "test_weight_decay_grokking.py").check(metrics)
