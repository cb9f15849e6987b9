"""The learner's own experiments: scaffold one, run it inside a run record, fill its README.

``python -m layer7_research new-experiment NAME`` writes ``experiments/NAME/`` from the
templates next to this module::

    README.md            hypothesis, setup, config, results (between markers), conclusion
    config.yaml          keys shared by the presets at the top level; ``quick:`` / ``full:``
    experiment.py        ``experiment(ctx) -> metrics``, a deliverable-style stub
    test_NAME.py         a failing stub: "write the check of your hypothesis"

It refuses a name that is not a lower-case identifier (it names a folder, a test module and a
run folder) and never overwrites an existing experiment.

``python -m layer7_research run-experiment experiments/NAME [--preset full]`` (also
``new-experiment run experiments/NAME``) loads the preset, opens a run with layer 0's
:func:`~layer0_math.lab.open_run` under ``runs/experiments/NAME/<timestamp>/`` (manifest with the
commit, config and status; ``metrics.json``; the experiment's plots), then rewrites the README's
results section, and only it: the text between ``<!-- results:start -->`` and
``<!-- results:end -->``.
"""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import re
import sys
from pathlib import Path
from string import Template
from typing import Any

import yaml

from layer0_math.lab import REPO_ROOT, open_run, read_manifest

TEMPLATES = Path(__file__).with_name("templates")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
START, END = "<!-- results:start -->", "<!-- results:end -->"
PRESETS = ("quick", "full")
LAYER = "experiments"  # runs/experiments/<name>/<timestamp>/


def check_name(name: str) -> str:
    """``name`` if it can name a folder, a module ``test_<name>`` and a run; else a ValueError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise ValueError(
            f"bad experiment name {name!r}: expected a lower-case identifier of at most 64 "
            "characters (a-z, then a-z, 0-9, _), e.g. 'weight_decay_grokking'"
        )
    return name


def files_for(name: str) -> dict[str, str]:
    """The scaffold's files (relative name -> text), rendered from the templates."""
    render = {
        "README.md": "README.md.tmpl",
        "config.yaml": "config.yaml.tmpl",
        "experiment.py": "experiment.py.tmpl",
        f"test_{name}.py": "test.py.tmpl",
    }
    return {
        out: Template((TEMPLATES / src).read_text()).substitute(name=name)
        for out, src in render.items()
    }


def new_experiment(name: str, root: Path | None = None) -> Path:
    """Write ``<root>/<name>/`` (root: the repository's ``experiments/``); refuse to overwrite."""
    folder = Path(root or REPO_ROOT / "experiments") / check_name(name)
    if folder.exists():
        raise FileExistsError(f"experiment {name!r} already exists at {folder}; not overwriting it")
    files = files_for(name)
    folder.mkdir(parents=True)
    for rel, text in files.items():
        (folder / rel).write_text(text)
    return folder


def load_config(folder: Path, preset: str) -> tuple[dict[str, Any], int]:
    """config.yaml's preset: the shared top-level keys, overridden by ``quick:`` or ``full:``;
    returns (config, seed)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    path = Path(folder) / "config.yaml"
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a mapping, got {type(raw).__name__}")
    shared = {k: v for k, v in raw.items() if k not in PRESETS}
    override = raw.get(preset) or {}
    if not isinstance(override, dict):
        raise ValueError(f"{path}: '{preset}' must be a mapping of overrides, got {override!r}")
    config = {**shared, **override}
    seed = config.pop("seed", 0)
    return config, seed


def _experiment_fn(folder: Path) -> Any:
    """``experiment`` from ``<folder>/experiment.py``, imported by path."""
    path = Path(folder) / "experiment.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {folder} an experiment folder?")
    spec = importlib.util.spec_from_file_location(f"experiment_{Path(folder).name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, "experiment", None)
    if not callable(fn):
        raise TypeError(f"{path} must define experiment(ctx) -> dict")
    return fn


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def results_section(run: Path, metrics: dict[str, Any]) -> str:
    """The README's results: the metrics as a table and where the run record is."""
    man = read_manifest(run) or {}
    git = man.get("git") or {}
    commit = (git.get("commit") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
    lines = [
        f"Preset `{man.get('preset')}`, seed {man.get('seed')}, commit {commit}, "
        f"{man.get('seconds')} s on {man.get('device')}; run record `{_shown(run)}`.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, value in metrics.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        lines.append(f"| {key} | {shown} |")
    return "\n".join(lines)


def fill_results(readme: Path, section: str) -> None:
    """Replace the text between the results markers; everything else stays byte for byte."""
    text = Path(readme).read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} lacks the markers {START} ... {END} around its results")
    Path(readme).write_text(text[: start + len(START)] + "\n" + section + "\n" + text[end:])


def run_experiment(
    folder: Path,
    preset: str = "quick",
    runs_dir: Path | None = None,
    parent_id: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run ``<folder>/experiment.py`` in a run record and fill the README; (run folder, metrics).
    ``runs_dir``: where ``experiments/<name>/`` runs go (default ``runs/``); ``parent_id``: the
    run this one belongs to (a deliverable that runs an experiment)."""
    folder = Path(folder)
    name = check_name(folder.resolve().name)
    config, seed = load_config(folder, preset)
    fn = _experiment_fn(folder)
    with open_run(
        LAYER, name, preset=preset, seed=seed, config=config, runs_dir=runs_dir, parent_id=parent_id
    ) as ctx:
        metrics = fn(ctx)
        if not isinstance(metrics, dict):
            raise TypeError(
                f"experiment() must return a dict of metrics, got {type(metrics).__name__}"
            )
        ctx.record_metrics(metrics)
    fill_results(folder / "README.md", results_section(ctx.out_dir, metrics))
    return ctx.out_dir, metrics


def run_main(argv: list[str]) -> int:
    """``run-experiment FOLDER [--preset quick|full]``."""
    parser = argparse.ArgumentParser(
        prog="python -m layer7_research run-experiment",
        description="Run an experiment folder's experiment.py in a run record; fill its README.",
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--preset", choices=PRESETS, default="quick")
    args = parser.parse_args(argv)
    try:
        run, metrics = run_experiment(args.folder, args.preset)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"run-experiment: {e}", file=sys.stderr)
        return 2
    print(f"{run}\n" + "\n".join(f"{k}: {v}" for k, v in metrics.items()))
    return 0


def main(argv: list[str]) -> int:
    """``new-experiment NAME [--root DIR]``, or ``new-experiment run FOLDER`` (= run-experiment)."""
    if argv and argv[0] == "run":
        return run_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m layer7_research new-experiment",
        description="Scaffold experiments/NAME/: README, config.yaml, experiment.py, a test stub.",
    )
    parser.add_argument("name")
    parser.add_argument("--root", type=Path, default=None, help="default: <repo>/experiments")
    args = parser.parse_args(argv)
    try:
        folder = new_experiment(args.name, args.root)
    except (ValueError, FileExistsError) as e:
        print(f"new-experiment: {e}", file=sys.stderr)
        return 2
    print(f"scaffolded {folder}: state the hypothesis in README.md, write experiment.py, then")
    print(f"  python -m layer7_research run-experiment {folder}")
    return 0
