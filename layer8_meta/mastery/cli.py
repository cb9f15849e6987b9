"""``test-mine`` and ``progress``: the learner's reimplementations, tested and scored.

``python -m layer8_meta test-mine --impl my_value.py --target layer1_autograd.value`` finds the
concept of that target in ``concepts.yaml``, runs its test files in a pytest subprocess with the
mastery plugin and ``DLSTACK_IMPL=layer1_autograd.value=/abs/my_value.py`` (so nothing of the
learner's code is imported into this process twice), prints the pytest output and a one-line
summary, and records the result in ``<runs>/mastery/progress.json``: per concept the impl path,
the sha256 of the file, passed, failed, skipped, the tests run and the date (the latest attempt,
plus a short history). A file, not a run folder: it is the learner's state across attempts, not
one experiment, and the scorecard needs only the newest entry per concept. ``--tests`` runs a
subset (recorded as such: a subset is "partial", it does not count as passing); arguments
after ``--`` go to pytest (``-- -x -k tanh``).

``python -m layer8_meta progress`` prints, per layer, each concept as passing, partial, failing,
"changed since" (the file no longer has the sha256 that passed) or not tried, and applies the
seed's rule "don't ascend until you can implement one model at that level from scratch": ready
for layer N+1 once a ``model: true`` concept of layer N passes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from layer0_math.lab import REPO_ROOT, runs_root, write_json
from layer0_math.runrecord import read_json
from layer8_meta.mastery.plugin import RESULT_ENV
from layer8_meta.mastery.swap import ENV, Swap, SwapError, check, format_env

CONCEPTS = Path(__file__).with_name("concepts.yaml")
HISTORY = 20  # attempts kept per concept


@dataclass(frozen=True)
class Concept:
    name: str
    layer: int
    target: str
    tests: tuple[str, ...]
    model: bool
    what: str


def load_concepts(path: Path = CONCEPTS) -> dict[str, Concept]:
    """The concepts of ``path``; a malformed entry is a ValueError naming it and the field."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    concepts = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: concept {name!r} must be a mapping, got {entry!r}")
        for key in ("layer", "target", "tests"):
            if key not in entry:
                raise ValueError(f"{path}: concept {name!r} has no {key!r}")
        if not isinstance(entry["layer"], int) or not isinstance(entry["tests"], list):
            raise ValueError(f"{path}: concept {name!r}: layer must be an int, tests a list")
        concepts[name] = Concept(
            name,
            entry["layer"],
            entry["target"],
            tuple(entry["tests"]),
            bool(entry.get("model", False)),
            entry.get("what", ""),
        )
    return concepts


def progress_path(runs_dir: Path | None = None) -> Path:
    return Path(runs_dir or runs_root()) / "mastery" / "progress.json"


def read_progress(runs_dir: Path | None = None) -> dict[str, Any]:
    """The recorded attempts (none yet: empty); an unreadable file is a ValueError, never
    silently replaced: it is the learner's history."""
    path = progress_path(runs_dir)
    if not path.exists():
        return {"concepts": {}}
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("concepts"), dict):
        raise ValueError(f"{path} is not a progress record: repair it or move it away")
    return data


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def record(runs_dir: Path | None, key: str, entry: dict[str, Any]) -> Path:
    """Store ``entry`` as the newest attempt at ``key`` (atomic; older attempts kept as history)."""
    progress = read_progress(runs_dir)
    previous = progress["concepts"].get(key, {})
    history = previous.get("history", [])
    if previous:
        history = (history + [{k: v for k, v in previous.items() if k != "history"}])[-HISTORY:]
    progress["concepts"][key] = {**entry, "history": history}
    return write_json(progress_path(runs_dir), progress)


# --------------------------------------------------------------------------------- test-mine
def _parse_test_mine(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(prog="python -m layer8_meta test-mine", description=__doc__)
    parser.add_argument("--impl", required=True, type=Path, help="your file, e.g. my_value.py")
    parser.add_argument("--target", required=True, help="the module it replaces")
    parser.add_argument("--tests", nargs="+", help="test files (default: the concept's)")
    parser.add_argument("--runs-dir", type=Path, help="default: $DLSTACK_RUNS or <repo>/runs")
    return parser.parse_args(argv), extra


def _check(args: argparse.Namespace, concepts: dict[str, Concept]) -> tuple[str, list[str]]:
    """The concept key and test files; raises SwapError/ValueError for a bad request."""
    concept = next((c for c in concepts.values() if c.target == args.target), None)
    if concept is None and not args.tests:
        known = ", ".join(sorted(c.target for c in concepts.values()))
        raise ValueError(f"--target {args.target}: no concept has that target; known: {known}")
    tests = list(args.tests or concept.tests)
    missing = [t for t in tests if not (REPO_ROOT / t).is_file()]
    if missing:
        raise ValueError(f"--tests: no such test file {', '.join(missing)} under {REPO_ROOT}")
    check(Swap(args.target, args.impl.resolve()))  # a missing name: one line, before pytest
    return (concept.name if concept else args.target), tests


def run_pytest(swap: Swap, tests: list[str], extra: list[str]) -> tuple[int, dict[str, Any]]:
    """Run ``tests`` with ``swap`` in a pytest subprocess: (exit code, the plugin's counts)."""
    with tempfile.TemporaryDirectory(prefix="dlstack-mastery-") as tmp:
        result = Path(tmp) / "result.json"
        env = {**os.environ, ENV: format_env([swap]), RESULT_ENV: str(result)}
        command = [sys.executable, "-m", "pytest", *tests, "-p", "layer8_meta.mastery.plugin"]
        # no test uses hydra's pytest fixtures, and loading them costs ~0.7 s per run
        command += ["-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:hydra_pytest", *extra]
        sys.stdout.flush()
        code = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False).returncode
        counts = read_json(result) or {"passed": 0, "failed": 0, "skipped": 0}
    return code, counts


def test_mine(argv: list[str]) -> int:
    args, extra = _parse_test_mine(argv)
    concepts = load_concepts()
    try:
        read_progress(args.runs_dir)  # unreadable: say so before the tests run, not after
        key, tests = _check(args, concepts)
    except (SwapError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    impl = args.impl.resolve()
    started = datetime.now(timezone.utc)
    code, counts = run_pytest(Swap(args.target, impl), tests, extra)
    full = key in concepts and tests == list(concepts[key].tests) and not extra
    entry = {
        "target": args.target,
        "impl": str(impl),
        "sha256": sha256(impl),
        "passed": counts["passed"],
        "failed": counts["failed"],
        "skipped": counts["skipped"],
        "tests": tests,
        "full": full,
        "pytest_exit": code,
        "date": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(timezone.utc) - started).total_seconds(), 2),
    }
    path = record(args.runs_dir, key, entry)
    ok = code == 0 and counts["failed"] == 0 and counts["passed"] > 0
    verdict = "all pass" if ok else ("FAILED" if counts["failed"] else f"pytest exit {code}")
    scope = "" if full else " (a subset: partial)"
    print(
        f"test-mine {key}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped: {verdict}{scope}; {args.target} = {impl}"
    )
    print(f"recorded in {path}")
    return 0 if ok else 1


# ---------------------------------------------------------------------------------- progress
def status_of(concept: Concept, entry: dict[str, Any] | None) -> str:
    """passing | partial | failing | changed since | not tried."""
    if not entry:
        return "not tried"
    if entry["failed"] or not entry["passed"] or entry.get("pytest_exit", 0) != 0:
        return "failing"
    impl = Path(entry["impl"])
    if not impl.is_file() or sha256(impl) != entry["sha256"]:
        return "changed since"
    return "passing" if entry.get("full") else "partial"


def _concept_line(concept: Concept, entry: dict[str, Any] | None, status: str) -> str:
    model = " [model]" if concept.model else ""
    head = f"  {concept.name:<14} {status:<13}"
    if not entry:
        return f"{head} {concept.what}{model}"
    counts = f"{entry['passed']} passed, {entry['failed']} failed"
    return f"{head} {counts}, {entry['date'][:10]}  {entry['impl']}{model}"


def _readiness(layer: int, concepts: list[Concept], statuses: dict[str, str]) -> str:
    models = [c for c in concepts if c.model]
    passing = [c.name for c in models if statuses[c.name] == "passing"]
    if passing:
        return f"  -> ready for layer {layer + 1}: {', '.join(passing)} passes (a model)"
    if not models:
        return f"  -> layer {layer} has no model concept in concepts.yaml"
    names = ", ".join(c.name for c in models)
    return f"  -> not ready for layer {layer + 1}: pass the full tests of one model ({names})"


def scorecard(concepts: dict[str, Concept], progress: dict[str, Any]) -> list[str]:
    """The scorecard's lines, layer by layer."""
    entries = progress.get("concepts", {})
    lines = []
    for layer in sorted({c.layer for c in concepts.values()}):
        members = [c for c in concepts.values() if c.layer == layer]
        statuses = {c.name: status_of(c, entries.get(c.name)) for c in members}
        tally = ", ".join(
            f"{sum(s == k for s in statuses.values())} {k}"
            for k in ("passing", "partial", "failing", "changed since", "not tried")
            if k in statuses.values()
        )
        lines.append(f"layer {layer}: {len(members)} concepts: {tally}")
        lines += [_concept_line(c, entries.get(c.name), statuses[c.name]) for c in members]
        lines.append(_readiness(layer, members, statuses))
    return lines


def progress(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m layer8_meta progress", description=__doc__)
    parser.add_argument("--runs-dir", type=Path, help="default: $DLSTACK_RUNS or <repo>/runs")
    args = parser.parse_args(argv)
    try:
        recorded = read_progress(args.runs_dir)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    print("\n".join(scorecard(load_concepts(), recorded)))
    print(
        f"(from {progress_path(args.runs_dir)}; try one: python -m layer8_meta test-mine "
        "--impl my_value.py --target layer1_autograd.value)"
    )
    return 0


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("progress", [])
    if command == "test-mine":
        return test_mine(rest)
    if command == "progress":
        return progress(rest)
    print(f"error: unknown mastery command {command!r}: expected test-mine or progress")
    return 2
