"""``python -m layer8_meta report [--out DIR] [--runs-dir DIR] [--last N]``: index the runs,
then write the report (``<runs>/report/report.html`` and ``report.md`` by default) and print
where it went, with one line per layer that has no runs yet.

``report --check-targets`` writes nothing: it lists each target in targets.yaml whose metric
the latest ok run of its deliverable did not record, and exits 1 when there is one.

With no runs at all (a fresh clone) the report still comes out: every deliverable *not run*,
with the command that runs it. Bad input (a ``--runs-dir`` that does not exist, an unreadable
targets file, an output folder that is not the report's) prints one ``error: ...`` line and
exits 2.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from layer0_math.lab import runs_root
from layer8_meta.registry import Registry
from layer8_meta.report.build import ReportResult, build_report
from layer8_meta.report.collect import unknown_target_metrics
from layer8_meta.report.targets import Target, load_targets


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m layer8_meta report",
        description="One HTML + Markdown report of the latest run of every deliverable.",
    )
    p.add_argument("--runs-dir", type=Path, default=None, help="default: $DLSTACK_RUNS or runs/")
    p.add_argument("--out", type=Path, default=None, help="default: <runs-dir>/report/")
    p.add_argument("--targets", type=Path, default=None, help="default: layer8_meta/targets.yaml")
    p.add_argument("--last", type=int, default=5, help="runs listed per deliverable (default 5)")
    p.add_argument(
        "--check-targets",
        action="store_true",
        help="only check that each target's metric is recorded by its deliverable's latest ok "
        "run (exit 1 if not)",
    )
    a = p.parse_args(argv)
    if a.last < 1:
        p.error(f"--last {a.last}; expected a positive number of runs")
    return a


def describe(result: ReportResult) -> str:
    lines = [
        f"wrote {result.html}",
        f"wrote {result.markdown}",
        f"{result.deliverables} deliverables; targets {result.targets_met} met, "
        f"{result.targets_missed} missed",
    ]
    lines += [f"no runs yet: {layer}" for layer in result.layers_without_runs]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    a = parse(argv)
    if a.runs_dir is None:  # a fresh clone has no runs yet: a report that says so
        runs_root().mkdir(parents=True, exist_ok=True)
    runs_dir = a.runs_dir if a.runs_dir is not None else runs_root()
    if not runs_dir.is_dir():
        print(
            f"error: runs folder {runs_dir} does not exist; run `make layers` (or pass --runs-dir)",
            file=sys.stderr,
        )
        return 2
    try:
        targets = load_targets(a.targets)
        registry = Registry.open(runs_dir)
        try:
            index = registry.index()
            if a.check_targets:
                return check(registry, targets)
            result = build_report(
                registry,
                a.out or runs_dir / "report",
                targets=targets,
                index_report=index,
                last_n=a.last,
            )
        finally:
            registry.close()
    except (ValueError, OSError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(result))
    return 0


def check(registry: Registry, targets: list[Target]) -> int:
    problems = unknown_target_metrics(registry, targets)
    ok = f"all {len(targets)} targets name a metric their deliverable records (or has no ok run)"
    print("\n".join(problems) or ok)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
