"""What the report shows: every deliverable the code defines, beside its latest run.

Two sources, joined by (layer, deliverable):

- **the code** (:func:`code_catalog`): each built layer's ``deliverables`` package in run order
  with its headline metrics (``spec_of(fn).headline``), the scripts in ``benchmarks/`` and the
  learner's experiments in ``experiments/``, so a deliverable never run still appears, as
  *not run*, with the command that runs it;
- **the registry**: each deliverable's top-level runs, newest first (a run inside another's
  folder, such as the worked example a deliverable runs, is that run's detail, not the
  deliverable's latest). The one shown is the newest that
  *finished* (ok, failed, interrupted, stopped); a newer one still ``running`` is noted beside
  it (a background ``make layerN``, or a run killed without a parent to close it).

A run found in the registry whose deliverable the code no longer defines is shown too, marked so.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from layer0_math.lab import REPO_ROOT, built_layers, deliverables_of, spec_of
from layer0_math.runrecord import FINAL_STATUSES, read_json
from layer8_meta.registry import Registry, RunRow
from layer8_meta.registry.query import DELIVERABLE_KINDS
from layer8_meta.report.targets import SECONDS, Target, metric_value

BENCHMARKS = "benchmarks"
EXPERIMENTS = "experiments"
EXTRA_METRICS = 6  # metrics shown for a run whose code names no headline (benchmarks, experiments)
RUNS_LOOKED_AT = 50  # per deliverable: enough to find the latest finished one and the history


@dataclass(frozen=True)
class Expected:
    """A deliverable the code defines: its name, headline metrics and the command that runs it."""

    deliverable: str
    headline: tuple[str, ...] = ()
    command: str = ""


@dataclass
class Group:
    """A layer (or the benchmarks, or the experiments) and what its code defines."""

    layer: str
    command: str
    expected: list[Expected] = field(default_factory=list)
    error: str | None = None  # why its deliverables could not be listed


@dataclass(frozen=True)
class Check:
    """One row of a deliverable's metric table: a value and, when one applies, its target."""

    metric: str
    value: Any
    target: Target | None
    verdict: str  # met | missed | no value | no target


@dataclass
class Entry:
    """One deliverable in the report: what the code says and what the runs show."""

    layer: str
    expected: Expected
    in_code: bool
    run: RunRow | None = None  # the newest finished run (or a running one when none finished)
    in_progress: RunRow | None = None  # a newer run still recorded "running"
    last_ok: RunRow | None = None  # when ``run`` is not ok: the newest ok run before it
    history: list[RunRow] = field(default_factory=list)  # newest first, any status
    values: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def deliverable(self) -> str:
        return self.expected.deliverable

    @property
    def status(self) -> str:
        return self.run.status if self.run is not None else "not run"


@dataclass
class Section:
    group: Group
    entries: list[Entry]


# ----------------------------------------------------------------------------- the code


def _layer_group(layer: str) -> Group:
    command = "make " + layer.split("_", 1)[0]
    try:
        module = importlib.import_module(f"{layer}.deliverables")
        fns = deliverables_of(module)
    except Exception as exc:  # noqa: BLE001 (a broken layer is reported, the rest still shown)
        return Group(layer, command, error=f"{type(exc).__name__}: {exc}")
    expected = [Expected(spec_of(fn).name, tuple(spec_of(fn).headline), command) for fn in fns]
    return Group(layer, command, expected)


def _benchmark_group() -> Group:
    scripts = sorted(p.stem for p in (REPO_ROOT / BENCHMARKS).glob("[!_]*.py"))
    command = "make bench"
    return Group(BENCHMARKS, command, [Expected(s, (), command) for s in scripts])


def _experiment_group() -> Group:
    folders = sorted(p.parent for p in (REPO_ROOT / EXPERIMENTS).glob("*/experiment.py"))
    command = "python -m layer7_research run-experiment experiments/NAME"
    expected = [
        Expected(f.name, (), f"python -m layer7_research run-experiment experiments/{f.name}")
        for f in folders
    ]
    return Group(EXPERIMENTS, command, expected)


def code_catalog() -> list[Group]:
    """Every built layer with its deliverables, then the benchmarks and the experiments.

    A layer with no deliverables (layer 8 builds reports, not runs) is left out."""
    groups = [_layer_group(layer) for layer in built_layers()]
    groups = [g for g in groups if g.expected or g.error]
    return [*groups, _benchmark_group(), _experiment_group()]


# ----------------------------------------------------------------------------- the runs


def run_values(run: RunRow) -> dict[str, Any]:
    """The run's scalar metrics as metrics.json holds them (text and booleans too), over the
    registry's numbers, plus ``seconds`` from the manifest."""
    data = read_json(run.path / "metrics.json")
    scalars = {}
    if isinstance(data, dict):
        scalars = {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))}
    return {**run.metrics, **scalars, SECONDS: run.seconds}


def _shown_metrics(entry: Entry, targets: Sequence[Target]) -> list[str]:
    names = list(entry.expected.headline)
    if not names:
        numeric = [k for k, v in entry.values.items() if metric_value(entry.values, k) is not None]
        names = [k for k in numeric if k != SECONDS][:EXTRA_METRICS]
    names += [t.metric for t in targets if t.metric not in names]
    return names


def checks_of(entry: Entry, targets: Sequence[Target]) -> list[Check]:
    """One row per shown metric and target: the headline metrics (or the first few numbers when
    the code names none), then each other metric a target names."""
    if entry.run is None:
        return []
    run = entry.run
    applying = [t for t in targets if t.applies(entry.layer, entry.deliverable, run.preset)]
    rows = []
    for name in _shown_metrics(entry, applying):
        value = entry.values.get(name)
        mine = [t for t in applying if t.metric == name]
        if not mine and (value is not None or run.status == "ok"):  # a failure's blanks: noise
            rows.append(Check(name, value, None, "no target"))
        for t in mine:
            rows.append(Check(name, value, t, t.verdict(metric_value(entry.values, name))))
    return rows


def _fill(entry: Entry, registry: Registry, targets: Sequence[Target], last_n: int) -> None:
    rows = registry.runs(
        layer=entry.layer, deliverable=entry.deliverable, limit=RUNS_LOOKED_AT, nested=False
    )
    rows = [r for r in rows if r.kind in DELIVERABLE_KINDS]
    finished = [r for r in rows if r.status in FINAL_STATUSES]
    entry.history = rows[:last_n]
    if not rows:
        return
    entry.run = finished[0] if finished else rows[0]
    if rows[0] is not entry.run:
        entry.in_progress = rows[0]
    if entry.run.status != "ok":
        entry.last_ok = next((r for r in finished if r.status == "ok"), None)
    if entry.run.status == "running":  # nothing to check until it finishes
        return
    entry.values = run_values(entry.run)
    entry.checks = checks_of(entry, targets)


def gather(
    registry: Registry, catalog: Sequence[Group], targets: Sequence[Target], last_n: int = 5
) -> list[Section]:
    """The report's sections: one per group of the catalog, then one per other layer seen in
    the registry; each lists the code's deliverables in order, then the runs' others."""
    seen: dict[str, list[str]] = {}
    for layer, deliverable in registry.deliverables():
        seen.setdefault(layer, []).append(deliverable)
    groups = list(catalog)
    known = {g.layer for g in groups}
    groups += [Group(layer, "") for layer in seen if layer not in known]
    sections = []
    for group in groups:
        named = {e.deliverable for e in group.expected}
        entries = [Entry(group.layer, e, True) for e in group.expected]
        extra = [d for d in seen.get(group.layer, []) if d not in named]
        entries += [Entry(group.layer, Expected(d, (), group.command), False) for d in extra]
        for entry in entries:
            _fill(entry, registry, targets, last_n)
        sections.append(Section(group, entries))
    return sections


def unknown_target_metrics(registry: Registry, targets: Sequence[Target]) -> list[str]:
    """One line per target whose metric the latest ok run of its deliverable did not record
    (a typo in targets.yaml, or a metric renamed in the code); targets of deliverables with no
    ok run yet cannot be checked and are left out."""
    problems = []
    for t in targets:
        run = registry.latest(t.layer, t.deliverable)
        if run is not None and t.metric not in run_values(run):
            problems.append(
                f"{t.layer}/{t.deliverable}: no metric {t.metric!r} in its latest ok run "
                f"{run.run_id[:8]} ({run.path})"
            )
    return problems
