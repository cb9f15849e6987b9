"""The report's files beside its pages: each run's plots and small artifacts, and trend charts.

The report must open anywhere (a moved folder, a docs site, an e-mailed zip), so what it shows
is **copied** into ``<out>/assets/``: every PNG a run saved (up to :data:`MAX_IMAGES`, each under
:data:`MAX_IMAGE_BYTES`) and its small text artifacts (manifest.json, metrics.json, table.md,
error.txt, ...). Only what cannot travel (the run folder itself, its checkpoints) is linked
relatively, for a report read where it was built.

A trend chart plots each headline metric over the deliverable's past ok runs
(:meth:`Registry.metric_history`), one panel per metric with at least two points, the target
as a dashed line; runs of another preset or config form another series (their values are not
one trend). Every file is written atomically;
``assets/`` is the report's own folder (marked by :data:`MARK`), so files a previous report
wrote and this one did not are removed from it, and nothing else is touched.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from layer0_math.files import atomic_write_bytes, is_partial
from layer0_math.lab import pyplot
from layer8_meta.registry import Registry, RunRow
from layer8_meta.report.collect import Entry

MARK = ".dlstack-report-assets"
MAX_IMAGES = 12
MAX_IMAGE_BYTES = 8 * 2**20
MAX_TEXT_BYTES = 2**20
TEXT_SUFFIXES = (".json", ".md", ".txt", ".yaml", ".csv")
MAX_PANELS = 6
# a copy named manifest.json under <runs>/report/ would be indexed as a second copy of its run
COPY_NAMES = {"manifest.json": "run_manifest.json"}
UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]+")


@dataclass
class Media:
    """What one deliverable's section links to, as paths relative to the report."""

    images: list[tuple[str, str]] = field(default_factory=list)  # (href, caption)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (label, href)
    trend: str | None = None


def safe_name(text: str) -> str:
    return UNSAFE.sub("_", text).strip("_") or "_"


def relative_href(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


class Assets:
    """Writes into ``<out>/assets/`` and remembers what it wrote (to prune the rest)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / "assets"
        self.written: set[Path] = set()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARK).touch()

    def write(self, rel: str, data: bytes) -> str:
        path = self.root / rel
        atomic_write_bytes(path, data)
        self.written.add(path)
        return relative_href(path, self.out_dir)

    def prune(self) -> list[Path]:
        """Remove the files under assets/ this report did not write (an older report's)."""
        stale = [
            p
            for p in self.root.rglob("*")
            if p.is_file() and p not in self.written and p.name != MARK
        ]
        for p in stale:
            p.unlink()
        for d in sorted((p for p in self.root.rglob("*") if p.is_dir()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
        return stale


def _run_files(run: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(plots, small text artifacts, checkpoint folders) of a run folder, in path order."""
    files = sorted(p for p in run.rglob("*") if p.is_file() and not is_partial(p))
    files = [p for p in files if "checkpoints" not in p.relative_to(run).parts]
    images = [p for p in files if p.suffix == ".png" and p.stat().st_size <= MAX_IMAGE_BYTES]
    texts = [
        p
        for p in files
        if p.suffix in TEXT_SUFFIXES
        and p.stat().st_size <= MAX_TEXT_BYTES
        and len(p.relative_to(run).parts) == 1
    ]
    checkpoints = sorted(p for p in run.rglob("checkpoints") if p.is_dir())
    return images[:MAX_IMAGES], texts, checkpoints


def copy_run(assets: Assets, entry: Entry) -> Media:
    """Copy the shown run's plots and small artifacts; link its folder and checkpoints."""
    media = Media()
    run = entry.run
    if run is None or not run.path.is_dir():
        return media
    base = f"runs/{safe_name(entry.layer)}/{safe_name(entry.deliverable)}/{run.run_id[:8]}"
    images, texts, checkpoints = _run_files(run.path)
    for p in images:
        rel = p.relative_to(run.path).as_posix()
        media.images.append((assets.write(f"{base}/{safe_name(rel)}", p.read_bytes()), rel))
    for p in texts:
        copy = COPY_NAMES.get(p.name, p.name)
        href = assets.write(f"{base}/{safe_name(copy)}", p.read_bytes())
        media.artifacts.append((p.name, href))
    media.artifacts.append(("run folder", relative_href(run.path, assets.out_dir)))
    for c in checkpoints:
        label = c.relative_to(run.path).as_posix() + "/"
        media.artifacts.append((label, relative_href(c, assets.out_dir)))
    return media


# ----------------------------------------------------------------------------- trend charts


def series_labels(rows: Sequence[RunRow]) -> dict[str, str]:
    """run id -> the series its point joins: its preset, and its config's hash when the ok runs
    ran more than one config (points of different configs are not one trend)."""
    several = len({r.config_hash for r in rows}) > 1
    return {
        r.run_id: f"{r.preset or 'no'} preset"
        + (f", config {(r.config_hash or '?')[:6]}" if several else "")
        for r in rows
    }


def _series(
    registry: Registry, entry: Entry, metric: str, labels: dict[str, str]
) -> dict[str, list[tuple[dt.datetime, float]]]:
    out: dict[str, list[tuple[dt.datetime, float]]] = {}
    for start, value, run_id in registry.metric_history(entry.layer, entry.deliverable, metric):
        label = labels.get(run_id, "other")
        out.setdefault(label, []).append((dt.datetime.fromisoformat(start), value))
    return out


def _panel(ax: object, metric: str, series: dict, entry: Entry) -> None:
    for label, points in sorted(series.items()):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, "o-", label=label)
    for check in entry.checks:
        if check.metric == metric and check.target is not None:
            ax.axhline(
                check.target.goal,
                color="tab:red",
                ls="--",
                lw=1,
                label=f"target {check.target.direction} {check.target.goal:g}",
            )
    ax.set_title(metric, fontsize=10)
    ax.set_xlabel("run start")
    ax.set_ylabel(metric)
    from matplotlib import dates  # after pyplot(): the backend is chosen

    ticks = dates.AutoDateLocator()
    ax.xaxis.set_major_locator(ticks)
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(ticks))
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)


def trend_chart(registry: Registry, assets: Assets, entry: Entry) -> str | None:
    """The entry's trend chart (PNG), or None when no shown metric has two ok runs."""
    metrics = []
    for check in entry.checks:
        if isinstance(check.value, (int, float)) and check.metric not in metrics:
            metrics.append(check.metric)
    rows = registry.runs(
        layer=entry.layer, deliverable=entry.deliverable, status="ok", nested=False
    )
    labels = series_labels(rows)
    panels = []
    for metric in metrics:
        series = _series(registry, entry, metric, labels)
        if sum(len(points) for points in series.values()) >= 2:
            panels.append((metric, series))
    if not panels:
        return None
    return _draw(assets, entry, panels[:MAX_PANELS])


def _draw(assets: Assets, entry: Entry, panels: Sequence[tuple[str, dict]]) -> str:
    plt = pyplot()
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (metric, series) in zip(axes.flat, panels, strict=False):
        _panel(ax, metric, series, entry)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"{entry.layer}/{entry.deliverable}: headline metrics over ok runs")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    name = f"trends/{safe_name(entry.layer)}__{safe_name(entry.deliverable)}.png"
    return assets.write(name, buf.getvalue())
