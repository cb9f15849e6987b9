"""The weekly reflection log: ``journal/YYYY-Www.md`` written from the run registry.

``python -m layer8_meta reflect --week [--date YYYY-MM-DD] [--journal DIR] [--runs-dir DIR]``
writes the entry of the ISO week holding ``--date`` (default today), Monday to Sunday:

- **What improved**: each headline metric (the deliverable's ``headline`` names) whose latest
  ok value this week beats the latest ok value before the week. Which way is better comes from
  ``layer8_meta/targets.yaml`` where it has the metric (``direction: ">="`` or ``"<="``), else
  from the name (:func:`layer8_meta.registry.query.infer_mode`: loss, bpb, ppl, fid, error,
  seconds ... lower is better; anything else higher).
- **What broke**: the failed and interrupted runs of the week with their error line; the
  deliverables whose latest run failed although an earlier one was ok; the headline metrics
  that got worse.
- **What is next**: the targets of ``targets.yaml`` the latest ok run misses (or has not
  measured) and the layers with no runs at all (with the ``make`` that runs them).
- **Time per layer**: the seconds of the week's top-level runs (sub-runs are inside their
  parent's time) per layer, in hours, against the planned budgets of an optional
  ``journal/budgets.yaml`` (``layer: hours``, the layer as a number or a package name).

Only runs that started before the week's end count, so an old week regenerates the same. The
learner's own words go between the ``<!-- my notes: start -->`` and ``<!-- my notes: end -->``
markers: a regeneration keeps that text byte for byte, and refuses to touch an existing entry
whose markers are gone. The file is written atomically.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from layer0_math.files import atomic_write_bytes
from layer0_math.lab import REPO_ROOT, built_layers, deliverables_of, spec_of
from layer8_meta.registry import Registry, RunRow, infer_mode
from layer8_meta.report.targets import SECONDS, TARGETS_FILE, Target, load_targets

START, END = "<!-- my notes: start -->", "<!-- my notes: end -->"
PLACEHOLDER = "\n(Your own words: what you learned, what surprised you, what you will try next.\n"
PLACEHOLDER += "Regenerating this entry keeps everything between these two markers.)\n"
OTHER_RUNS = ("experiments", "benchmarks")  # runs/ folders that are not a layer, budgetable


@dataclass(frozen=True)
class Week:
    year: int
    number: int
    start: dt.datetime  # Monday 00:00
    end: dt.datetime  # the next Monday 00:00

    @property
    def name(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    def holds(self, when: dt.datetime) -> bool:
        return self.start <= when < self.end


def iso_week(day: dt.date) -> Week:
    year, number, _ = day.isocalendar()
    monday = dt.datetime.combine(dt.date.fromisocalendar(year, number, 1), dt.time())
    return Week(year, number, monday, monday + dt.timedelta(days=7))


def started(row: RunRow) -> dt.datetime:
    """The run's start as a naive local datetime (the manifests write local time)."""
    when = dt.datetime.fromisoformat(row.start)
    return when.astimezone().replace(tzinfo=None) if when.tzinfo else when


def same_layer(name: str, layer: str | int) -> bool:
    """Whether package ``name`` is ``layer`` (a package name, or its number)."""
    text = str(layer)
    return name == text or (text.isdigit() and name.startswith(f"layer{text}_"))


def better(metric: str, new: float, old: float, targets: list[Target]) -> bool | None:
    """Whether ``new`` beats ``old`` (None when equal): direction from targets, else the name."""
    if new == old:
        return None
    directions = {t.direction for t in targets if t.metric == metric}  # both: a range
    lower = "<=" in directions if len(directions) == 1 else infer_mode(metric) == "min"
    return new < old if lower else new > old


def fmt(value: float) -> str:
    return f"{value:.4g}"


# ----------------------------------------------------------------------------- the sections

Headlines = Callable[[str, str], tuple[str, ...]]


def _by_deliverable(rows: Iterable[RunRow]) -> dict[tuple[str, str], list[RunRow]]:
    """Runs grouped by (layer, deliverable), each group newest first (as the registry gives)."""
    groups: dict[tuple[str, str], list[RunRow]] = defaultdict(list)
    for r in sorted(rows, key=started, reverse=True):
        groups[(r.layer, r.deliverable)].append(r)
    return dict(sorted(groups.items()))


def _targets_of(targets: list[Target], layer: str, deliverable: str) -> list[Target]:
    return [t for t in targets if (t.layer, t.deliverable) == (layer, deliverable)]


def metric_moves(
    rows: list[RunRow], week: Week, headlines: Headlines, targets: list[Target]
) -> tuple[list[str], list[str]]:
    """(improved, worse): headline metrics of this week's latest ok run against the last before."""
    improved, worse = [], []
    for (layer, name), runs in _by_deliverable(r for r in rows if r.status == "ok").items():
        now = next((r for r in runs if week.holds(started(r))), None)
        before = next((r for r in runs if started(r) < week.start), None)
        if now is None or before is None:
            continue
        mine = _targets_of(targets, layer, name)
        for metric in headlines(layer, name) or tuple(now.metrics):
            if metric not in now.metrics or metric not in before.metrics:
                continue
            new, old = now.metrics[metric], before.metrics[metric]
            verdict = better(metric, new, old, mine)
            line = f"{layer}/{name}: {metric} {fmt(old)} -> {fmt(new)} (run {now.run_id[:8]})"
            if verdict is True:
                improved.append(line)
            elif verdict is False:
                worse.append(f"got worse: {line}")
    return improved, worse


def _error_line(row: RunRow) -> str:
    lines = (row.error or "").strip().splitlines()
    return lines[0] if lines else "(no error recorded)"


def breakages(rows: list[RunRow], week: Week) -> list[str]:
    """This week's failed/interrupted runs, then deliverables whose latest run failed after ok."""
    lines = [
        f"{r.status}: {r.layer}/{r.deliverable} run {r.run_id[:8]} "
        f"({started(r):%Y-%m-%d %H:%M}): {_error_line(r)}"
        for r in sorted(rows, key=started)
        if week.holds(started(r)) and r.status in ("failed", "interrupted")
    ]
    for (layer, name), runs in _by_deliverable(rows).items():
        ok = next((r for r in runs if r.status == "ok"), None)
        if runs[0].status == "failed" and ok is not None:
            lines.append(
                f"regression: {layer}/{name}: the latest run failed; the last ok run was "
                f"{ok.run_id[:8]} ({started(ok):%Y-%m-%d})"
            )
    return lines


def _target_lines(run: RunRow | None, targets: list[Target]) -> list[str]:
    """The targets of one deliverable its latest ok run misses (or all, unmeasured, if none)."""
    t0 = targets[0]
    if run is None:
        return [f"not measured yet: {t0.layer}/{t0.deliverable}: no ok run for "
                f"{len(targets)} target(s), e.g. {t0.metric} {t0.text()}"]  # fmt: skip
    lines = []
    for t in (t for t in targets if t.applies(run.layer, run.deliverable, run.preset)):
        value = run.seconds if t.metric == SECONDS else run.metrics.get(t.metric)
        verdict = t.verdict(value)
        if verdict == "missed":
            lines.append(f"target missed: {t.layer}/{t.deliverable}: {t.metric} = "
                         f"{fmt(value)}, goal {t.text()}")  # fmt: skip
        elif verdict == "no value":
            lines.append(f"not measured: {t.layer}/{t.deliverable} run {run.run_id[:8]} "
                         f"records no {t.metric} (goal {t.text()})")  # fmt: skip
    return lines


def next_steps(rows: list[RunRow], targets: list[Target], layers: list[str]) -> list[str]:
    """Targets the latest ok run misses or lacks, then the layers with no run at all."""
    groups = _by_deliverable(rows)
    wanted: dict[tuple[str, str], list[Target]] = defaultdict(list)
    for t in targets:
        wanted[(t.layer, t.deliverable)].append(t)
    lines, seen = [], {r.layer for r in rows}
    for key, mine in wanted.items():
        if key[0] in seen:  # a layer never run is one line, below
            ok = next((r for r in groups.get(key, []) if r.status == "ok"), None)
            lines += _target_lines(ok, mine)
    lines += [
        f"no runs yet: {layer} (make layer{layer[5:].split('_')[0]})"
        for layer in layers
        if layer not in seen
    ]
    return lines


def time_table(rows: list[RunRow], week: Week, budgets: dict[str, float]) -> list[str]:
    """A markdown table: hours of the week's top-level runs per layer, against the budgets."""
    spent: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for r in rows:
        if week.holds(started(r)) and r.parent_id is None:
            spent[r.layer] += r.seconds or 0.0
            count[r.layer] += 1
    layers = sorted(set(spent) | set(budgets))
    lines = ["| layer | runs | hours | budget (h) | over / under |", "|---|---:|---:|---:|---|"]
    for layer in layers:
        hours = spent[layer] / 3600
        budget = budgets.get(layer)
        verdict = "-" if budget is None else _over_under(hours, budget)
        shown = "-" if budget is None else f"{budget:g}"
        lines.append(f"| {layer} | {count[layer]} | {hours:.2f} | {shown} | {verdict} |")
    total, planned = sum(spent.values()) / 3600, sum(budgets.values())
    verdict = _over_under(total, planned) if budgets else "-"
    shown = f"{planned:g}" if budgets else "-"
    lines.append(f"| total | {sum(count.values())} | {total:.2f} | {shown} | {verdict} |")
    return lines


def _over_under(hours: float, budget: float) -> str:
    if abs(hours - budget) < 0.005:
        return "on budget"
    return f"{'over' if hours > budget else 'under'} by {abs(hours - budget):.2f} h"


def _section(title: str, lines: list[str], empty: str) -> list[str]:
    return [f"## {title}", "", *([f"- {x}" for x in lines] or [empty]), ""]


def render(
    rows: list[RunRow],
    week: Week,
    *,
    headlines: Headlines,
    targets: list[Target],
    budgets: dict[str, float],
    layers: list[str],
    notes: str = PLACEHOLDER,
) -> str:
    """The entry's text from the runs that started before the week's end."""
    rows = [r for r in rows if started(r) < week.end]
    mine = [r for r in rows if week.holds(started(r))]
    statuses = ", ".join(
        f"{sum(r.status == s for r in mine)} {s}" for s in sorted({r.status for r in mine})
    )
    improved, worse = metric_moves(rows, week, headlines, targets)
    last = week.end - dt.timedelta(days=1)
    text = [
        f"# Week {week.name} ({week.start:%Y-%m-%d} to {last:%Y-%m-%d})",
        "",
        f"{len(mine)} runs this week ({statuses or 'none'}; "
        f"{sum(r.parent_id is None for r in mine)} top-level). Generated by "
        "`python -m layer8_meta reflect --week` from the run registry; only the section "
        "'My notes' is yours, the rest is rewritten each time.",
        "",
        *_section("What improved", improved, "Nothing beat its value from before this week."),
        *_section("What broke", breakages(rows, week) + worse, "Nothing broke this week."),
        *_section("What is next", next_steps(rows, targets, layers), "Every target is met."),
        "## Time per layer",
        "",
        *time_table(rows, week, budgets),
        "",
        "## My notes",
        "",
    ]
    return "\n".join(text) + f"{START}{notes}{END}\n"


def kept_notes(path: Path) -> str:
    """The text between the markers of an existing entry (PLACEHOLDER for a new one)."""
    if not path.exists():
        return PLACEHOLDER
    old = path.read_bytes().decode("utf-8")  # bytes: no newline translation
    start = old.find(START)
    end = old.find(END, start + len(START)) if start >= 0 else -1
    if start < 0 or end < 0:
        raise ValueError(
            f"{path} exists but has lost its markers {START} ... {END}; not overwriting your "
            "text: put the markers back around it, or move the file away"
        )
    return old[start + len(START) : end]


def write_entry(path: Path, text_for: Callable[[str], str]) -> Path:
    """Write the entry atomically, around the learner's kept notes (never overwritten)."""
    atomic_write_bytes(path, text_for(kept_notes(path)).encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- inputs


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not YAML: {exc}") from exc


def load_budgets(path: Path, layers: list[str]) -> dict[str, float]:
    """``{layer: hours}`` from budgets.yaml, keys resolved to package names; none if absent."""
    if not path.exists():
        return {}
    data = _yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping layer: hours, got {data!r}")
    budgets = {}
    for key, hours in data.items():
        match = [name for name in layers if same_layer(name, key)]
        if not match or not isinstance(hours, int | float) or hours < 0:
            raise ValueError(
                f"{path}: budget {key!r}: {hours!r}; expected a layer (0-8 or one of "
                f"{', '.join(layers)}) and a number of hours >= 0"
            )
        budgets[match[0]] = float(hours)
    return budgets


@functools.cache
def headlines_of(layer: str, deliverable: str) -> tuple[str, ...]:
    """The headline metric names the deliverable declares (empty: use all its metrics)."""
    try:
        module = importlib.import_module(f"{layer}.deliverables")
        fns = {spec_of(fn).name: fn for fn in deliverables_of(module)}
    except (ImportError, TypeError, ValueError):
        return ()
    return spec_of(fns[deliverable]).headline if deliverable in fns else ()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m layer8_meta reflect", description=__doc__)
    p.add_argument("--week", action="store_true", required=True, help="write the week's entry")
    p.add_argument(
        "--date",
        type=dt.date.fromisoformat,
        default=None,
        help="a day of the week to write (YYYY-MM-DD; default today)",
    )
    p.add_argument("--journal", type=Path, default=REPO_ROOT / "journal", help="journal folder")
    p.add_argument("--runs-dir", type=Path, default=None, help="runs folder (default <runs>)")
    p.add_argument("--targets", type=Path, default=TARGETS_FILE, help="targets.yaml")
    return p


def reflect(args: argparse.Namespace) -> Path:
    week = iso_week(args.date or dt.date.today())
    layers = [name for name in built_layers() if name != "layer8_meta"]
    targets = load_targets(args.targets) if args.targets.exists() else []
    budgets = load_budgets(args.journal / "budgets.yaml", [*layers, *OTHER_RUNS])
    registry = Registry.open(runs_dir=args.runs_dir)
    try:
        registry.index()
        rows = registry.runs()
    finally:
        registry.close()
    path = args.journal / f"{week.name}.md"
    return write_entry(
        path,
        lambda notes: render(
            rows,
            week,
            headlines=headlines_of,
            targets=targets,
            budgets=budgets,
            layers=layers,
            notes=notes,
        ),
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        path = reflect(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"wrote {path}")
    return 0
