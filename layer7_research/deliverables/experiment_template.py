"""``experiment_template``: the learner's experiment scaffold, shown working end to end.

1. Scaffold a new experiment (:func:`~layer7_research.experiments.new_experiment`) inside this
   run's folder and run its stub test with pytest: it must fail, asking for the check of the
   hypothesis (a scaffold whose test passes untouched would check nothing).
2. Run the worked example ``experiments/weight_decay_grokking/`` (a copy in this run's folder,
   so the repository's README is not rewritten) through
   :func:`~layer7_research.experiments.run_experiment`: its own run record (a sub-run of this
   one), its README's results filled, then its hypothesis checked by its own ``check()``.

Artifacts: ``scaffold/`` (the new experiment), ``stub_test.txt`` (pytest's report),
``worked_example/`` (the copy with its results), ``runs/experiments/...`` (its run record),
``table.md``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from typing import Any

from layer0_math.lab import REPO_ROOT, RunContext, deliverable
from layer7_research.experiments import new_experiment, run_experiment

STUB_MESSAGE = "write the check of your hypothesis"


@deliverable(
    quick={"new_name": "my_first_experiment", "example": "weight_decay_grokking"},
    full={},
    headline=["stub_test_fails", "hypothesis_holds", "test_accuracy_no_decay",
              "test_accuracy_decay"],
)  # fmt: skip
def experiment_template(ctx: RunContext) -> dict[str, Any]:
    """Scaffold one experiment (its stub test fails), run the worked example, check it."""
    cfg = ctx.config
    folder = new_experiment(cfg["new_name"], ctx.path("scaffold"))
    stub = _run_stub_test(ctx, folder / f"test_{cfg['new_name']}.py")
    example = ctx.path("worked_example") / cfg["example"]
    shutil.copytree(REPO_ROOT / "experiments" / cfg["example"], example)
    run, metrics = run_experiment(
        example, ctx.preset, runs_dir=ctx.path("runs"), parent_id=ctx.run_id
    )
    holds = _check(example / f"test_{cfg['example']}.py", metrics)
    out = {
        "scaffold_files": sorted(p.name for p in folder.iterdir()),
        "stub_test_fails": int(stub),
        "hypothesis_holds": int(holds),
        "worked_example_run": str(run.relative_to(ctx.out_dir)),
        **metrics,
    }
    ctx.write_text("table.md", _table(cfg, out))
    return out


def _run_stub_test(ctx: RunContext, test_file) -> bool:
    """Run the scaffold's test with pytest; True when it fails asking for the check."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    ctx.write_text("stub_test.txt", done.stdout + done.stderr)
    return done.returncode == 1 and STUB_MESSAGE in done.stdout


def _check(test_file, metrics: dict[str, Any]) -> bool:
    """The worked example's own ``check(metrics)``: True when its assertions hold."""
    spec = importlib.util.spec_from_file_location("worked_example_check", test_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.check(metrics)
    except AssertionError:
        return False
    return True


def _table(cfg: dict[str, Any], m: dict[str, Any]) -> str:
    def yes(flag: int) -> str:
        return "yes" if flag else "no"

    def accuracies(suffix: str) -> str:
        return f"{m['train_accuracy_' + suffix]:.3f} / {m['test_accuracy_' + suffix]:.3f}"

    rows = [
        ("scaffolded files", ", ".join(m["scaffold_files"])),
        ("stub test fails (asks for the check)", yes(m["stub_test_fails"])),
        (f"worked example `{cfg['example']}`: hypothesis holds", yes(m["hypothesis_holds"])),
        ("train / test accuracy, λ = 0", accuracies("no_decay")),
        ("train / test accuracy, λ = 1", accuracies("decay")),
        ("run record", m["worked_example_run"]),
    ]
    return "| what | result |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
