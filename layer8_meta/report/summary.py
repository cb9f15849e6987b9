"""The report's top: per layer, how many deliverables are ok, failed or never run, and how many
targets are met; the targets missed; which commits and which hardware made the runs shown; the
latest runs."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from layer8_meta.registry import Registry, RunRow
from layer8_meta.registry.query import DELIVERABLE_KINDS
from layer8_meta.report.collect import Check, Section

RECENT = 10


@dataclass(frozen=True)
class LayerCount:
    layer: str
    command: str
    deliverables: int
    ok: int
    failed: int
    other: int  # interrupted, stopped, running
    not_run: int
    met: int
    missed: int
    error: str | None = None

    @property
    def has_runs(self) -> bool:
        return self.ok + self.failed + self.other > 0


@dataclass
class Summary:
    generated: str
    runs_dir: Path
    layers: list[LayerCount]
    commits: list[tuple[str, int]]  # (commit, how many shown runs), most first
    hardware: list[tuple[str, int]]
    recent: list[RunRow] = field(default_factory=list)
    missed: list[tuple[str, str, Check]] = field(default_factory=list)  # (layer, deliverable, .)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.layers)

    @property
    def without_runs(self) -> list[LayerCount]:
        return [c for c in self.layers if not c.has_runs]


def commit_text(run: RunRow) -> str:
    if not run.commit:
        return "unknown"
    return run.commit[:10] + (" (dirty)" if run.dirty else "")


def hardware_text(run: RunRow) -> str:
    cpu = run.host.get("cpu") if isinstance(run.host.get("cpu"), dict) else {}
    parts = [str(cpu.get("model") or run.host.get("machine") or "unknown CPU")]
    if run.host.get("cpus"):
        parts.append(f"{run.host['cpus']} CPUs")
    parts.append(f"device {run.device or 'unknown'}")
    return ", ".join(parts)


def _count(section: Section) -> LayerCount:
    statuses = Counter(e.status for e in section.entries)
    verdicts = Counter(c.verdict for e in section.entries for c in e.checks)
    return LayerCount(
        layer=section.group.layer,
        command=section.group.command,
        deliverables=len(section.entries),
        ok=statuses["ok"],
        failed=statuses["failed"],
        other=len(section.entries) - statuses["ok"] - statuses["failed"] - statuses["not run"],
        not_run=statuses["not run"],
        met=verdicts["met"],
        missed=verdicts["missed"],
        error=section.group.error,
    )


def summarize(
    registry: Registry,
    sections: Sequence[Section],
    skipped: Sequence[tuple[Path, str]] = (),
) -> Summary:
    shown = [e.run for s in sections for e in s.entries if e.run is not None]
    latest = registry.runs(limit=5 * RECENT, nested=False)
    recent = [r for r in latest if r.kind in DELIVERABLE_KINDS]
    return Summary(
        generated=dt.datetime.now().isoformat(sep=" ", timespec="seconds"),
        runs_dir=registry.runs_dir,
        layers=[_count(s) for s in sections if s.entries or s.group.error],
        commits=Counter(commit_text(r) for r in shown).most_common(),
        hardware=Counter(hardware_text(r) for r in shown).most_common(),
        recent=recent[:RECENT],
        missed=[
            (e.layer, e.deliverable, c)
            for s in sections
            for e in s.entries
            for c in e.checks
            if c.verdict == "missed"
        ],
        skipped=list(skipped),
    )


def fmt(value: object) -> str:
    """A value for a table cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_line(run: RunRow) -> str:
    """preset, seed, commit, seconds and start of a run, in one line."""
    seconds = "" if run.seconds is None else f"{run.seconds:.1f} s · "
    return (
        f"preset {fmt(run.preset)} · seed {fmt(run.seed)} · commit {commit_text(run)} · "
        f"{seconds}started {run.start.replace('T', ' ')} · run {run.run_id[:8]}"
    )


def seconds_text(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"
