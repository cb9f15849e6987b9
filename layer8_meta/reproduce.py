"""``python -m layer8_meta reproduce RUN``: rerun a deliverable from its manifest alone, compare.

A run's manifest names everything needed to run it again: the layer and deliverable, the preset
and seed (which fix the config), and the git commit of the code. Reproducing is::

    1. where:  HEAD is the run's commit and the tree is clean -> run here; else check the commit
               out in a temporary ``git worktree`` and run there, with this .venv's python and
               ``cwd`` = the worktree (so that its packages shadow the installed ones: checked
               before the run, by asking the child's import system where the layer resolves,
               and after it, by the commit the rerun's own manifest recorded)
    2. run:    the layer runner's one-deliverable child (``layer0_math.runner _one``), into a new
               folder of the same runs dir, with ``DLSTACK_PARENT_RUN_ID`` = the original run, so
               the rerun is recorded as its child
    3. check:  the rerun's config (the preset's at that commit) against the recorded one; then
               every numeric metric: exact (==) for a CPU run, else within a relative tolerance
               (``--tolerance``); timings (seconds, speed, MFU, load) are shown, not compared
    4. clean:  the worktree is removed, whatever happened

The exit status is 0 when everything matches, 1 on any difference (or a failed rerun), 2 on bad
input. A run recorded on a dirty tree is reproduced from its commit and flagged: the uncommitted
changes it ran with are not in git, so a difference may be theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layer0_math.lab import close_dead_run, new_run_dir, read_manifest, runs_root
from layer0_math.runrecord import FINAL_STATUSES, code_root, dead_child
from layer8_meta.registry import Registry, flatten, is_timing
from layer8_meta.registry.cli import Parser, fmt, table
from layer8_meta.registry.db import metric_values

ACCELERATOR_TOLERANCE = 1e-3
PROBE = (
    "import importlib.util as u, sys\n"
    "for name in sys.argv[1:]:\n"
    "    spec = u.find_spec(name)\n"
    "    print(spec.origin if spec else '-')\n"
)


class ReproduceError(ValueError):
    """A run that cannot be reproduced as asked; the message says why."""


@dataclass
class Plan:
    """What to rerun, from which code, and what to tell the user about it."""

    manifest: dict[str, Any]
    top: Path  # the git repository holding the layer's code
    commit: str | None
    in_worktree: bool
    notes: list[str] = field(default_factory=list)


def _git(top: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "--no-optional-locks", *args], cwd=top, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise ReproduceError(f"git {' '.join(args)} failed in {top}: {done.stderr.strip()}")
    return done.stdout.strip()


def _not_a_deliverable(man: dict[str, Any]) -> str | None:
    """Why ``reproduce`` cannot rerun this run (None: it can)."""
    what = f"run {man.get('run_id')} of {man.get('layer')}/{man.get('deliverable')}"
    if man.get("layer") == "experiments":
        return (
            f"{what} is a layer 7 experiment: rerun it with `python -m layer7_research "
            f"run-experiment experiments/{man.get('deliverable')} --preset {man.get('preset')}` "
            "and compare the two with `compare`"
        )
    if man.get("kind", "deliverable") != "deliverable":
        parent = man.get("parent_id")
        hint = f"; reproduce its parent {parent}" if parent else ""
        return f"{what} is a {man.get('kind')!r} run: reproduce reruns deliverables{hint}"
    return None


def plan(man: dict[str, Any]) -> Plan:
    """Decide where the rerun runs (see the module docstring, step 1)."""
    why = _not_a_deliverable(man)
    if why is not None:
        raise ReproduceError(why)
    top = Path(_git(code_root(man["layer"]), "rev-parse", "--show-toplevel"))
    recorded = man.get("git") or {}
    commit, head = recorded.get("commit"), _git(top, "rev-parse", "HEAD")
    dirty = bool(_git(top, "status", "--porcelain"))
    p = Plan(man, top, commit, in_worktree=False)
    if commit is None:
        p.notes.append("the run recorded no git commit: rerun with the code as it is now")
    elif commit != head or dirty:
        p.in_worktree = True
        why = "HEAD has moved on" if commit != head else "the working tree has changes"
        p.notes.append(f"{why}: rerun at {commit[:12]} in a temporary git worktree")
    else:
        p.notes.append(f"HEAD is {commit[:12]} and the tree is clean: rerun here")
    if recorded.get("dirty"):
        p.notes.append(
            "FLAG: the run was recorded on a dirty tree (changes "
            f"{str(recorded.get('changes_hash'))[:12]}); those changes are not in git and cannot "
            "be recovered, so a difference may come from them"
        )
    return p


@contextlib.contextmanager
def worktree(top: Path, commit: str) -> Iterator[Path]:
    """A detached checkout of ``commit`` in a temporary folder, removed afterwards."""
    holder = Path(tempfile.mkdtemp(prefix="dlstack-reproduce-"))
    tree = holder / "tree"
    try:
        _git(top, "worktree", "add", "--detach", str(tree), commit)
        yield tree
    finally:
        with contextlib.suppress(ReproduceError):
            _git(top, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(holder, ignore_errors=True)
        with contextlib.suppress(ReproduceError):
            _git(top, "worktree", "prune")


def check_imports(cwd: Path, layer: str, env: dict[str, str]) -> None:
    """Fail unless the child would import ``layer`` (and layer 0's runner, when the checkout has
    it) from ``cwd``, not from the installed copy."""
    names = [layer] + (["layer0_math"] if (cwd / "layer0_math").is_dir() else [])
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *names],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    origins = out.stdout.splitlines()
    for name, origin in zip(names, origins, strict=False):
        if origin == "-" or not Path(origin).resolve().is_relative_to(cwd.resolve()):
            raise ReproduceError(f"in {cwd}, {name} would be imported from {origin}, not {cwd}")
    if len(origins) != len(names):
        raise ReproduceError(f"could not ask where {names} resolve in {cwd}: {out.stderr.strip()}")


def rerun(p: Plan, cwd: Path, runs_dir: Path) -> Path:
    """Run the deliverable again into a new folder of ``runs_dir``; return that folder."""
    man = p.manifest
    env = {**os.environ, "DLSTACK_RUNS": str(runs_dir), "DLSTACK_PARENT_RUN_ID": man["run_id"]}
    check_imports(cwd, man["layer"], env)
    run = new_run_dir(man["layer"], man["deliverable"], runs_dir)
    cmd = [sys.executable, "-m", "layer0_math.runner", "_one", man["layer"], man["deliverable"]]
    cmd += ["--run-dir", str(run), "--preset", str(man.get("preset") or "quick")]
    cmd += ["--seed", str(man.get("seed") or 0)]
    if man.get("requested_device"):
        cmd += ["--device", man["requested_device"]]
    print(f"rerunning {man['layer']}/{man['deliverable']} in {cwd} -> {run}", flush=True)
    code = subprocess.run(cmd, cwd=cwd, env=env).returncode
    record = read_manifest(run) or {}
    if record.get("status") not in FINAL_STATUSES:
        status, why = dead_child(code) if code else ("failed", "ended with no final record")
        close_dead_run(
            run,
            status,
            why,
            identity={
                "layer": man["layer"],
                "deliverable": man["deliverable"],
                "kind": "deliverable",
            },
        )
    return run


# ----------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class MetricCheck:
    """One metric of the original run beside the rerun's (None: the run lacks it)."""

    name: str
    original: float | None
    rerun: float | None

    def ok(self, tolerance: float) -> bool:
        if self.original is None or self.rerun is None:
            return False
        return math.isclose(self.rerun, self.original, rel_tol=tolerance, abs_tol=0.0)

    @property
    def diff(self) -> float | None:
        return None if self.original is None or self.rerun is None else self.rerun - self.original


def check_metrics(
    original: dict[str, float], rerun: dict[str, float]
) -> tuple[list[MetricCheck], list[str]]:
    """The metrics to compare (every numeric one that is not a timing), and the timings."""
    names = list(dict.fromkeys([*original, *rerun]))
    timings = [n for n in names if is_timing(n)]
    checks = [MetricCheck(n, original.get(n), rerun.get(n)) for n in names if not is_timing(n)]
    return checks, timings


def config_note(original: dict[str, Any], again: dict[str, Any]) -> str | None:
    """None when the rerun's config (the preset's at that commit) is the recorded one; else
    the keys that differ."""
    if original.get("config_hash") == again.get("config_hash"):
        return None
    a, b = flatten(original.get("config") or {}), flatten(again.get("config") or {})
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys) or "the hash only"
    return f"the recorded config is not the preset's at that commit ({shown})"


def report(
    checks: list[MetricCheck], timings: list[str], tolerance: float, rerun_status: str
) -> tuple[str, bool]:
    """The per-metric table and whether everything matched."""
    rows = [("metric", "original", "rerun", "diff", "check")]
    rows += [
        (c.name, fmt(c.original), fmt(c.rerun), fmt(c.diff), "ok" if c.ok(tolerance) else "DIFF")
        for c in checks
    ]
    lines = [table(rows)] if checks else ["no numeric metrics to compare"]
    if timings:
        lines.append(f"timings, shown in the runs but not compared: {', '.join(timings)}")
    ok = rerun_status == "ok" and all(c.ok(tolerance) for c in checks) and bool(checks)
    return "\n".join(lines), ok


def reproduce(run: str, tolerance: float | None, runs_dir: Path | None) -> int:
    """Rerun ``run`` (see the module docstring); the exit status."""
    runs_dir = Path(runs_dir) if runs_dir is not None else runs_root()
    reg = Registry.open(runs_dir)
    reg.index()
    row = reg.get(run)
    man = read_manifest(row.path)
    if man is None:
        raise ReproduceError(f"{row.path}/manifest.json is unreadable")
    p = plan(man)
    if tolerance is None:
        on_cpu = str(man.get("device") or "cpu").startswith("cpu")
        tolerance = 0.0 if on_cpu else ACCELERATOR_TOLERANCE
    print(
        f"reproducing {row.run_id} ({row.layer}/{row.deliverable}, preset {row.preset}, "
        f"seed {row.seed}, {row.device})"
    )
    for note in p.notes:
        print(f"  {note}")
    if p.in_worktree:
        with worktree(p.top, str(p.commit)) as tree:
            again_dir = rerun(p, tree / code_root(row.layer).parent.relative_to(p.top), runs_dir)
    else:
        again_dir = rerun(p, code_root(row.layer).parent, runs_dir)
    return _verdict(man, row.path, again_dir, tolerance)


def _verdict(man: dict[str, Any], original: Path, again_dir: Path, tolerance: float) -> int:
    again = read_manifest(again_dir) or {}
    status = again.get("status", "missing")
    print(
        f"rerun {again.get('run_id')} (child of {again.get('parent_id')}): {status}"
        + (f": {again.get('error')}" if again.get("error") else "")
    )
    note = config_note(man, again)
    print(f"config: DIFF, {note}" if note else "config: ok (the preset's at that commit)")
    commit, ran = (man.get("git") or {}).get("commit"), (again.get("git") or {}).get("commit")
    if commit is not None and ran != commit:  # the child records the commit of what it imported
        note = f"the rerun ran the code of commit {ran}, not {commit}"
        print(f"code: DIFF, {note}")
    elif commit is not None:
        print(f"code: ok (the rerun recorded commit {str(ran)[:12]}, the original's)")
    checks, timings = check_metrics(
        metric_values(original / "metrics.json")[0], metric_values(again_dir / "metrics.json")[0]
    )
    text, ok = report(checks, timings, tolerance, status)
    print(text)
    how = "exact" if tolerance == 0 else f"relative tolerance {tolerance:g}"
    verdict = "REPRODUCED" if ok and note is None else "DIFFERENT"
    print(f"{verdict} ({how}); rerun in {again_dir}")
    return 0 if ok and note is None else 1


def _tolerance(value: str) -> float:
    try:
        tol = float(value)
    except ValueError:
        tol = -1.0
    if not tol >= 0:
        raise argparse.ArgumentTypeError(f"tolerance {value!r}; expected a number >= 0 (e.g. 1e-6)")
    return tol


def main(argv: list[str]) -> int:
    p = Parser(
        prog="python -m layer8_meta reproduce",
        description="Rerun a deliverable from its manifest (same commit, preset, seed) and "
        "compare its metrics with the original's.",
    )
    p.add_argument("run", help="a run id, a unique prefix of one, or a run folder")
    p.add_argument(
        "--tolerance",
        type=_tolerance,
        default=None,
        help="relative tolerance (default: exact on CPU, 1e-3 on an accelerator)",
    )
    p.add_argument("--runs-dir", type=Path, default=None, help="default: $DLSTACK_RUNS or ./runs")
    args = p.parse_args(argv)
    try:
        return reproduce(args.run, args.tolerance, args.runs_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
